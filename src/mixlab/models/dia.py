"""CIFAR ResNets with DIA, the Dense-and-Implicit Attention of DIANet (Huang et al., AAAI 2020, arXiv 1905.10671).

Every block splits into a residual branch R_t and a shortcut S_t. With DIA, one `DIALSTMCell` per stage is
shared by all blocks of that stage, its state carried from block to block and reset to zero at the stage start:

    h_t, state_t = LSTM(GAP(R_t), state_{t−1});    x_t = merge(R_t ⊙ h_t, S_t)

merge is ReLU(R + S) for the post-activation bottleneck (ResNet-164) and R + S for the pre-activation wide
block (WRN-52-4). The LSTM adds parameters per stage, not per block, so they do not grow with depth.

- ResNet-164: stem conv3×3 3→16 + BN + ReLU; 3 stages × 18 bottlenecks (1×1 → 3×3 (stride) → 1×1, each
  BN, ReLU between), planes 16/32/64, expansion 4; conv1×1 + BN shortcut where the shape changes; GAP; FC.
  At 100 classes: 1,727,284 parameters, DIA 1,946,132 (osmr/imgclsmob's figures).
- WRN-52-4: stem conv3×3 3→16; 3 stages × 8 pre-activation blocks BN-ReLU-conv3×3-dropout-BN-ReLU-conv3×3,
  widths 64/128/256; conv1×1 shortcut on the pre-activated input where the shape changes; BN-ReLU; GAP; FC.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from timm.models._features import feature_take_indices

from ..layers.dia import DIALSTMCell
from ..layers.head import check_pool, new_head, pool2d
from ..registry import register_model


def conv3x3(in_chans, out_chans, stride=1):
    return nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=False)


class Bottleneck(nn.Module):
    """Post-activation bottleneck: R = BN(conv1×1(ReLU(BN(conv3×3(ReLU(BN(conv1×1(x)))))))), merge ReLU(R + S)."""

    expansion = 4

    def __init__(self, in_chans, planes, stride=1, **_):
        super().__init__()
        out_chans = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chans, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_chans, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.shortcut = nn.Identity()
        if stride != 1 or in_chans != out_chans:
            self.shortcut = nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_chans))

    def branches(self, x):
        """(R, S): the residual branch after its last BN, before the addition, and the shortcut."""
        r = F.relu(self.bn1(self.conv1(x)))
        r = F.relu(self.bn2(self.conv2(r)))
        return self.bn3(self.conv3(r)), self.shortcut(x)

    @staticmethod
    def merge(r, s):
        return F.relu(r + s)


class PreActWideBlock(nn.Module):
    """Pre-activation wide basic block: a = ReLU(BN(x)); R = conv3×3(ReLU(BN(drop(conv3×3(a))))); S = x or
    conv1×1(a) where the shape changes; merge R + S (no activation after the addition)."""

    expansion = 1

    def __init__(self, in_chans, planes, stride=1, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chans)
        self.conv1 = conv3x3(in_chans, planes, stride)
        self.drop = nn.Dropout(drop_rate)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = None
        if stride != 1 or in_chans != planes:
            self.shortcut = nn.Conv2d(in_chans, planes, 1, stride, bias=False)

    def branches(self, x):
        a = F.relu(self.bn1(x))
        r = self.conv2(F.relu(self.bn2(self.drop(self.conv1(a)))))
        return r, (x if self.shortcut is None else self.shortcut(a))

    @staticmethod
    def merge(r, s):
        return r + s


class DIAStage(nn.Module):
    """Blocks of one stage; with `dia`, one shared LSTM cell recalibrates every block's residual branch in a
    single pass, its (h, c) state carried from block to block and starting at zero."""

    __jit_unused_properties__ = ["stride"]

    def __init__(self, blocks, channels, dia=False, reduction=4):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.dia = DIALSTMCell(channels, reduction) if dia else None
        self.num_chs = channels

    @property
    def stride(self):
        """The stage's spatial stride: the largest conv stride in it (the first block's downsampling)."""
        return max((m.stride[0] for m in self.modules() if isinstance(m, nn.Conv2d)), default=1)

    def forward(self, x):
        state = None
        for block in self.blocks:
            r, s = block.branches(x)
            if self.dia is not None:
                attn, state = self.dia(r.mean(dim=(2, 3)), state)
                r = r * attn[:, :, None, None]
            x = block.merge(r, s)
        return x


class CifarResNet(nn.Module):
    """CIFAR ResNet (3 stages, stride 1/2/2) over `Bottleneck` or `PreActWideBlock`, optionally with DIA.

    depth: 9n+2 for the bottleneck (164 → 18 blocks a stage), 6n+4 for the wide block (52 → 8 blocks a stage).
    """

    BLOCKS = {"bottleneck": Bottleneck, "preact_wide": PreActWideBlock}

    def __init__(self, block="bottleneck", depth=164, widen_factor=1, num_classes=100, in_chans=3, img_size=32,
                 dia=False, dia_reduction=4, drop_rate=0.0, stem_chans=16, global_pool="avg"):
        super().__init__()
        if block not in self.BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {sorted(self.BLOCKS)}")
        check_pool(global_pool)
        block_cls = self.BLOCKS[block]
        per_stage, rule = ((depth - 2) // 9, "9n+2") if block == "bottleneck" else ((depth - 4) // 6, "6n+4")
        if per_stage < 1 or depth != (9 * per_stage + 2 if block == "bottleneck" else 6 * per_stage + 4):
            raise ValueError(f"depth {depth} does not fit the {block} ResNet; it must be {rule} with n ≥ 1")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.global_pool = global_pool
        self.grad_checkpointing = False
        self.preact = block == "preact_wide"
        planes = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = conv3x3(in_chans, stem_chans)
        self.stem_bn = nn.Identity() if self.preact else nn.BatchNorm2d(stem_chans)
        stages, prev = [], stem_chans
        for i, p in enumerate(planes):
            blocks = []
            for j in range(per_stage):
                blocks.append(block_cls(prev, p, 2 if (i > 0 and j == 0) else 1, drop_rate=drop_rate))
                prev = p * block_cls.expansion
            stages.append(DIAStage(blocks, prev, dia, dia_reduction))
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(prev) if self.preact else nn.Identity()
        self.num_features = self.head_hidden_size = prev
        self.head = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:   # meta: no values to initialise
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    # --- timm model API -------------------------------------------------------------------------------
    default_norm = "dianet"   # DIANet's cifar.py Normalize constants (mixlab.registry.NORMALIZATION)
    __jit_unused_properties__ = ["feature_info"]

    @property
    def feature_info(self):
        """One entry per stage (`stages.i`): its width and stride, read off the stages (any block type); fixed at
        first use, so it keeps describing the full net after prune_intermediate_layers (as timm's models do)."""
        info = getattr(self, "_feature_info", None)
        if info is None:
            info, reduction = [], self.stem.stride[0]
            for i, stage in enumerate(self.stages):
                reduction *= stage.stride
                info.append(dict(num_chs=stage.num_chs, reduction=reduction, module=f"stages.{i}"))
            self._feature_info = info
        return info

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        """Parameter groups for layer-wise lr decay: stem, each stage (or block), the final norm."""
        blocks = r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.blocks\.(\d+)"
        return dict(stem=r"^stem", blocks=[(blocks, None), (r"^stages\.(\d+)\.dia", None), (r"^final_bn", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable=True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes, global_pool=None):
        if global_pool is not None:
            check_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = new_head(self, self.num_features, num_classes, ref=self.stem.weight)

    def _stem(self, x):
        x = self.stem(x)
        return x if self.preact else F.relu(self.stem_bn(x))

    def _final_norm(self, x):
        """The pre-activation net's closing BN-ReLU (its "norm"); identity for the post-activation one (whose
        final_bn is an identity) and once pruned."""
        return x if isinstance(self.final_bn, nn.Identity) else F.relu(self.final_bn(x))

    def forward_features(self, x):
        """Images [B, C, H, W] → feature map [B, num_features, H/4, W/4]."""
        x = self._stem(x)
        for stage in self.stages:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return self._final_norm(x)

    def forward_intermediates(self, x, indices=None, norm=False, stop_early=False, output_fmt="NCHW",
                              intermediates_only=False):
        """(final features, [outputs of the selected stages]); timm's contract.

        indices: None (every stage), n (the last n) or a list; norm: the pre-activation net's closing BN-ReLU on
        the last stage's output; stop_early: skip the stages after the last selected one; output_fmt 'NCHW' or
        'NLC' (flattened).
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        last = len(self.stages) - 1
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages[:max_index + 1] if stop_early else self.stages
        intermediates = []
        x = self._stem(x)
        for i, stage in enumerate(stages):
            x = checkpoint(stage, x, use_reentrant=False) if self.grad_checkpointing else stage(x)
            if i in take_indices:
                y = self._final_norm(x) if norm and i == last else x
                intermediates.append(y if output_fmt == "NCHW" else y.flatten(2).transpose(1, 2))
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self._final_norm(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm=False, prune_head=True):
        """Drop the stages after the last of `indices` (the closing norm goes with them, or with prune_norm), so
        forward_features ends at the last kept stage. Returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        if prune_norm or max_index < len(self.stages) - 1:
            self.final_bn = nn.Identity()
        self.stages = self.stages[:max_index + 1]
        self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_head(self, x, pre_logits: bool = False):
        x = pool2d(x, self.global_pool)
        if pre_logits:
            return x
        if self.global_pool == "" and self.num_classes > 0:   # unpooled: logits at every location [B, K, H, W]
            return self.head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


PUBLISHED = {  # CIFAR-100 top-1, mean of 5 runs, official DIANet README; params from osmr/imgclsmob
    "resnet164": dict(top1_cifar100=73.43, params=1727284),
    "dia_resnet164": dict(top1_cifar100=76.67, params=1946132),
    "wrn52_4": dict(top1_cifar100=79.75),
    "dia_wrn52_4": dict(top1_cifar100=80.99),
}
CONFIGS = {
    "resnet164": ("resnet", dict(block="bottleneck", depth=164), "ResNet-164 (bottleneck), DIANet's baseline"),
    "dia_resnet164": ("dia", dict(block="bottleneck", depth=164, dia=True),
                      "DIA-ResNet-164, gbup-group/DIANet models/cifar/dia_resnet.py (arXiv 1905.10671)"),
    "wrn52_4": ("resnet", dict(block="preact_wide", depth=52, widen_factor=4, drop_rate=0.3),
                "WRN-52-4 (pre-activation wide ResNet, dropout 0.3), DIANet's baseline"),
    "dia_wrn52_4": ("dia", dict(block="preact_wide", depth=52, widen_factor=4, drop_rate=0.3, dia=True),
                    "DIA-WRN-52-4 (arXiv 1905.10671)"),
}


def _register(name, family, base, source):
    def build(num_classes=100, in_chans=3, img_size=32, **overrides):
        return CifarResNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **{**base, **overrides})

    build.__name__ = name
    register_model(name, family=family, paper=True, input_size=(3, 32, 32), num_classes=100, source=source,
                   published=PUBLISHED[name])(build)


for _name, (_family, _base, _source) in CONFIGS.items():
    _register(_name, _family, _base, _source)
