"""Dense models: any mixlab classifier as a backbone (its timm-style `forward_intermediates`) under a head.

    Backbone        the classifier built with num_classes=0, pruned after its last used level
                    (`prune_intermediate_layers`), returning its last `levels` feature maps [B, C_l, H_l, W_l]
    segmentation    deeplabv3: DeepLabHead(C_last, K) on the last map; fpn: FeaturePyramidNetwork over the maps,
                    the FPN maps upsampled to the finest and summed, 3×3 conv + GroupNorm + ReLU, 1×1 conv to K.
                    The logits are upsampled bilinearly to the input size: [B, K, H, W]
    detection       torchvision RetinaNet / FCOS with `FPNBackbone` (the backbone's maps through an FPN, with
                    `out_channels`), anchors of side S/8 · 2^l on level l (three scales, ratios ½, 1, 2 for
                    RetinaNet; one per level for FCOS), images kept at S (min_size = max_size = S) and
                    normalised by the loader (image_mean 0, image_std 1). No pretrained weights, no downloads.
    output stride   a backbone with an `output_stride` option (AFFNet) is built atrous unless --model-kwargs
                    sets one: at DEEPLAB_OUTPUT_STRIDE = 8 under deeplabv3 (torchvision's DeepLabv3 builders
                    dilate their ResNets to 8 the same way), and under the other heads at the largest of 32, 16,
                    8 that leaves the last map at least MIN_MAP = 8 px a side (at S = 64: 8; S ≥ 256: 32, no
                    dilation). A stride-32 AFFNet at 64 px leaves a 2×2 map: DeepLab stayed at the all-background
                    solution on the generated scenes, and RetinaNet's 16-32 px objects fell between its anchors.

`frozen_backbone=True` (`--freeze-backbone`) trains only the head on the backbone as initialised: its weights
take no gradient and its norms stay in eval mode (a random-feature baseline for a trained backbone's figures).

A `DenseModel` records what rebuilds it: `model_name` (the backbone's registered name), `init_kwargs` (its
kwargs as asked), `num_classes`, and `dense` = {task, head, levels, fpn_channels, frozen_backbone, and the
output_stride the DeepLab rule chose}, which config.json keeps (`load_dense` reads them back for `mixlab eval`,
`predict` and `export`).
"""
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spec import HEADS, check_head, default_head

LEVELS = 3
FPN_CHANNELS = 64
DEEPLAB_OUTPUT_STRIDE = 8
MIN_MAP = 8


class Backbone(nn.Module):
    """The last `levels` feature maps of a mixlab classifier (module docstring)."""

    def __init__(self, name, img_size, in_chans=3, levels=LEVELS, **kwargs):
        super().__init__()
        from .. import create_model
        net = create_model(name, num_classes=0, img_size=img_size, in_chans=in_chans, **kwargs)
        info = list(net.feature_info)
        if not hasattr(net, "forward_intermediates") or not info:
            raise ValueError(f"{name} has no feature levels (forward_intermediates / feature_info) to be a backbone")
        self.indices = list(range(max(0, len(info) - levels), len(info)))
        # the final norm and head go too: every parameter left is used (DDP needs that)
        net.prune_intermediate_layers(self.indices, prune_norm=True, prune_head=True)
        self.net = net
        self.channels = [int(info[i]["num_chs"]) for i in self.indices]
        self.reductions = [int(info[i]["reduction"]) for i in self.indices]

    def forward(self, x):
        return self.net.forward_intermediates(x, indices=self.indices, intermediates_only=True)


class FPNBackbone(nn.Module):
    """Backbone maps → FeaturePyramidNetwork: an OrderedDict of `out_channels` maps, as torchvision detectors take."""

    def __init__(self, backbone, out_channels=FPN_CHANNELS):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork
        self.body, self.out_channels = backbone, out_channels
        self.fpn = FeaturePyramidNetwork(backbone.channels, out_channels)

    def forward(self, x):
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(self.body(x))))


class FPNSegHead(nn.Module):
    """The light FPN segmentation head (module docstring)."""

    def __init__(self, channels, num_classes, width=FPN_CHANNELS):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork
        self.fpn = FeaturePyramidNetwork(channels, width)
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.GroupNorm(8, width),
                                  nn.ReLU(inplace=True))
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, maps):
        pyramid = list(self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps))).values())
        size = max((p.shape[-2:] for p in pyramid), key=lambda s: s[0] * s[1])
        fused = sum(F.interpolate(p, size=size, mode="bilinear", align_corners=False) if p.shape[-2:] != size
                    else p for p in pyramid)
        return self.classify(self.fuse(fused))


def anchor_sizes(img_size, levels):
    """Anchor side of each level: S/8 · 2^l (objects a quarter to half the image are covered at S = 64)."""
    return [max(4.0, img_size / 8) * 2 ** level for level in range(levels)]


class DenseModel(nn.Module):
    """A backbone + a segmentation or detection head (module docstring)."""

    def __init__(self, backbone, task, head, num_classes, img_size, in_chans=3, backbone_kwargs=None,
                 levels=LEVELS, fpn_channels=FPN_CHANNELS, frozen_backbone=False, output_stride=None):
        super().__init__()
        if task not in HEADS:
            raise ValueError(f"unknown dense task {task!r}; choose {' or '.join(HEADS)}")
        head = head or default_head(task)
        check_head(task, head)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"a dense model needs at least 2 classes (with background), got {num_classes!r}")
        kwargs = dict(backbone_kwargs or {})
        self.model_name, self.num_classes, self.task, self.head = backbone, num_classes, task, head
        self.init_kwargs = {**kwargs, "img_size": img_size, "in_chans": in_chans}
        self.dense = {"task": task, "head": head, "levels": levels, "fpn_channels": fpn_channels,
                      "frozen_backbone": bool(frozen_backbone)}
        if "output_stride" not in kwargs:
            output_stride = output_stride or _atrous_output_stride(backbone, head, img_size)
            if output_stride:
                kwargs["output_stride"] = self.dense["output_stride"] = int(output_stride)
        body = Backbone(backbone, img_size, in_chans, levels, **kwargs)
        if self.frozen_backbone:
            body.requires_grad_(False)
        if task == "segmentation":
            from torchvision.models.segmentation.deeplabv3 import DeepLabHead
            self.backbone = body
            self.decoder = DeepLabHead(body.channels[-1], num_classes) if head == "deeplabv3" else \
                FPNSegHead(body.channels, num_classes, fpn_channels)
        else:
            self.detector = _detector(head, FPNBackbone(body, fpn_channels), num_classes, img_size, len(body.channels))

    @property
    def frozen_backbone(self) -> bool:
        return self.dense["frozen_backbone"]

    def train(self, mode: bool = True):
        """nn.Module.train; a frozen backbone stays in eval mode (its norms keep their statistics)."""
        super().train(mode)
        if self.frozen_backbone:
            self.body.eval()
        return self

    @property
    def body(self) -> Backbone:
        """The `Backbone` under either head."""
        return self.backbone if self.task == "segmentation" else self.detector.backbone.body

    def forward(self, x, targets=None):
        """Segmentation: logits [B, K, H, W] at the input size. Detection: torchvision's detector on the batch
        (training: its loss dict; evaluation: a list of {boxes, scores, labels})."""
        if self.task == "segmentation":
            maps = self.backbone(x)
            logits = self.decoder(maps if self.head == "fpn" else maps[-1])
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.detector(list(x), targets)


def _atrous_output_stride(backbone, head, img_size):
    """The output stride a backbone with an `output_stride` option is built at (module docstring), else None."""
    from ..registry import model_arguments
    if "output_stride" not in model_arguments(backbone):
        return None
    if head == "deeplabv3":
        return DEEPLAB_OUTPUT_STRIDE
    return max([s for s in (8, 16, 32) if img_size // s >= MIN_MAP] or [8])


def _detector(head, fpn_backbone, num_classes, img_size, levels):
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    sizes = anchor_sizes(img_size, levels)
    common = dict(min_size=img_size, max_size=img_size, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
    if head == "retinanet":
        anchors = AnchorGenerator(tuple(tuple(s * 2 ** (k / 3) for k in range(3)) for s in sizes),
                                  ((0.5, 1.0, 2.0),) * levels)
        return RetinaNet(fpn_backbone, num_classes, anchor_generator=anchors, **common)
    anchors = AnchorGenerator(tuple((s,) for s in sizes), ((1.0,),) * levels)
    return FCOS(fpn_backbone, num_classes, anchor_generator=anchors, **common)


def build_dense(config: dict) -> DenseModel:
    """The `DenseModel` a run's config.json describes (model, model_kwargs, num_classes, dense block)."""
    dense = config.get("dense")
    if not isinstance(dense, dict):
        raise ValueError("config.json has no dense block: it is not a segmentation or detection run")
    kwargs = dict(config.get("model_kwargs") or {})
    img_size, in_chans = kwargs.pop("img_size"), kwargs.pop("in_chans", 3)
    kwargs.pop("num_classes", None)
    return DenseModel(config["model"], dense["task"], dense["head"], int(config["num_classes"]), img_size, in_chans,
                      kwargs, dense.get("levels", LEVELS), dense.get("fpn_channels", FPN_CHANNELS),
                      bool(dense.get("frozen_backbone", False)), dense.get("output_stride"))


def load_dense(run_dir, weights=None) -> DenseModel:
    """A dense run's model (`weights`, else the run's default, `rundir.default_weights`) in eval mode, with
    `data_config` from config.json."""
    import json

    from safetensors.torch import load_model
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    from ..rundir import weights_path
    path = weights_path(run_dir, weights)
    model = build_dense(config)
    load_model(model, str(path))
    model.data_config = {k: config.get(k) for k in ("mean", "std", "class_names", "input_size")}
    model.weights_file = path.name
    return model.eval()
