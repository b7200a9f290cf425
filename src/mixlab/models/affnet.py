"""AFFNet (Huang et al., "Adaptive Frequency Filters As Efficient Global Token Mixers", ICCV 2023,
arXiv 2307.14008): a MobileViT-shaped hierarchical net whose token mixer is the Adaptive Frequency Filter.

    stem conv3×3/2 → 16 (BN+SiLU) → layer1: MV2 × 1 → layer2: MV2 × 3 (first /2)
    → layer3..5: MV2 /2 downsample + AFFBlock(n = 2, 4, 3) → 1×1 conv to min(4·C₅, 960) (BN+SiLU) → GAP → FC

    AFFBlock(x) = fuse([x, BN(conv1×1(LN₂ᴅ(Blockₙ(…Block₁(x)))))])     fuse = conv1×1(2C→C) + BN + SiLU
    Block(x)    = x + DropPath(AFF(LN₂ᴅ(MV2(LN₂ᴅ(x)))))                 MV2 = inverted residual, expand 2;
                                                                      AFF keeps its inner identity skip
LN₂ᴅ is ml-cvnets' "layer_norm_2d" (GroupNorm with one group). The FFN (MV2) comes before the mixer inside
one skip, and the MV2 keeps its own identity skip, as in the official code (microsoft/TokenMixers).

No local-representation conv: MobileViT puts conv3×3(C→C) + BN + SiLU + conv1×1(C→C_t) before the
transformer blocks; AFFNet's code has it commented out, and the published totals agree. At 1000 classes and
256 px this module has AFFNet-ET 1,436,264, AFFNet-T 2,654,232 and AFFNet 5,568,696 parameters; with the local
conv they would be 1,793,368, 3,371,928 and 7,413,304, far from every published figure (1.4M / 2.6M / 5.5M).
Without it, every count truncates to the published one-decimal figure. (Round-to-nearest would give 2.7M
and 5.6M, so the paper truncates. ml-cvnets' own profiler skips each Block's two norms and the mask biases and
prints 1.428M / 2.643M / 5.551M, which also truncates to the published figures.)

The mask MLP's activation comes from the same `act` as the convs: the official code takes both from one
option (`model.activation.name`), which MobileViT-style configs set to swish (SiLU).
"""
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from timm.layers import DropPath, LayerNorm2d, make_divisible, trunc_normal_
from timm.models._features import feature_take_indices

from ..layers.act import act_layer as named_act_layer
from ..layers.head import ClassifierApi, check_pool, pool2d, stage_intermediates
from ..mixers.fourier import AdaptiveFrequencyFilter
from ..registry import register_model


# mode in the official config → (MV2 expand ratio, layer1/2 channels, layer3/4/5 channels); blocks 2/4/3,
# AFF ffn_dim = 2 × channels everywhere.
AFFNET_CONFIGS = {
    "affnet_et": dict(mv2_expand=2, channels=(32, 48, 64, 104, 144)),   # "xx_small"
    "affnet_t": dict(mv2_expand=4, channels=(32, 48, 96, 160, 192)),    # "x_small"
    "affnet": dict(mv2_expand=4, channels=(32, 64, 128, 256, 320)),     # "small"
}
# The paper's and README's "0.4 / 0.8 / 1.5 G FLOPs" are multiply-adds (ml-cvnets' profiler counts MACs):
# mixlab's counter, FLOPs = 2·MACs, gives 0.72 / 1.59 / 2.93 GFLOPs, i.e. 0.36 / 0.80 / 1.47 GMACs.
PUBLISHED = {"affnet_et": dict(params_m=1.4, top1=73.0, gmacs=0.4),
             "affnet_t": dict(params_m=2.6, top1=77.0, gmacs=0.8),
             "affnet": dict(params_m=5.5, top1=79.8, gmacs=1.5)}


def conv_norm_act(in_chans, out_chans, kernel_size=1, stride=1, groups=1, act=nn.SiLU, dilation=1):
    """Conv (no bias) → BN (→ act): ml-cvnets' ConvLayer with use_norm=True ('same' padding at any dilation)."""
    layers = [nn.Conv2d(in_chans, out_chans, kernel_size, stride, dilation * (kernel_size // 2), dilation=dilation,
                        groups=groups, bias=False),
              nn.BatchNorm2d(out_chans)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand (BN+act, skipped at ratio 1) → 3×3 depth-wise (BN+act) → 1×1 project (BN);
    y = x + block(x) when stride is 1 and the width is kept, else block(x). `dilation` dilates the depth-wise
    conv (a dense backbone's output stride, `AFFNet(output_stride=...)`)."""

    def __init__(self, in_chans, out_chans, stride=1, expand_ratio=2.0, act=nn.SiLU, dilation=1):
        super().__init__()
        hidden = make_divisible(int(round(in_chans * expand_ratio)), 8)
        layers = [conv_norm_act(in_chans, hidden, 1, act=act)] if expand_ratio != 1 else []
        layers += [conv_norm_act(hidden, hidden, 3, stride, groups=hidden, act=act, dilation=dilation),
                   conv_norm_act(hidden, out_chans, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.use_skip = stride == 1 and in_chans == out_chans

    def forward(self, x):
        return x + self.block(x) if self.use_skip else self.block(x)


ATTN_NORMS = ("layer_norm_2d", "layer_norm")
OUTPUT_STRIDES = (8, 16, 32)
INITS = ("mixlab", "official")


def attn_norm_layer(name: str, dim: int) -> nn.Module:
    """The norm around AFF's token mixer, ml-cvnets' `attn_norm_layer` option:

    - "layer_norm_2d": LN₂ᴅ, one mean and variance over all of C×H×W per image (GroupNorm with one group), the
      default in the official code (`MobileViTBlock(attn_norm_layer="layer_norm_2d")`) and mixlab's default;
    - "layer_norm": a LayerNorm over the C channels at each position, (x − mean_c x) / √(var_c x + 1e-5)·γ + β,
      the default of the official command-line option (`--model.classification.mit.attn-norm-layer`).
    The authors' configs are not in the repository, so which one the published nets used is not known.
    """
    if name == "layer_norm_2d":
        return nn.GroupNorm(1, dim)
    if name == "layer_norm":
        return LayerNorm2d(dim, eps=1e-5)   # ml-cvnets' LayerNorm eps
    raise ValueError(f"AFFNet: unknown attn_norm {name!r}; choose one of {list(ATTN_NORMS)}")


class AFFTransformerBlock(nn.Module):
    """x + DropPath(AFF(LN₂ᴅ(MV2(LN₂ᴅ(x))))): FFN before the mixer, one outer skip (official `double_skip=False`)."""

    def __init__(self, dim, ffn_dim, num_groups=8, act=nn.SiLU, mask_act="silu", drop_path=0.0, fft_impl="torch",
                 attn_norm="layer_norm_2d", dilation=1):
        super().__init__()
        self.norm1 = attn_norm_layer(attn_norm, dim)
        self.mlp = InvertedResidual(dim, dim, 1, ffn_dim / dim, act=act, dilation=dilation)
        self.norm2 = attn_norm_layer(attn_norm, dim)
        self.filter = AdaptiveFrequencyFilter(dim, num_groups, act=mask_act, inner_skip=True, fft_impl=fft_impl)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.filter(self.norm2(self.mlp(self.norm1(x)))))


class AFFBlock(nn.Module):
    """MobileViT block with unfold/fold removed and AFF blocks as the global representation:
    Blocks → LN₂ᴅ → 1×1 conv (C_t→C, BN) → [fusion: concat(x, ·) → 1×1 conv (2C→C, BN+act)]."""

    def __init__(self, in_chans, dim, ffn_dim, depth, act=nn.SiLU, mask_act="silu", drop_path=(),
                 fusion=True, fft_impl="torch", attn_norm="layer_norm_2d", dilation=1):
        super().__init__()
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.Sequential(*[
            AFFTransformerBlock(dim, ffn_dim, act=act, mask_act=mask_act, drop_path=drop_path[i], fft_impl=fft_impl,
                                attn_norm=attn_norm, dilation=dilation)
            for i in range(depth)])
        self.norm = attn_norm_layer(attn_norm, dim)
        self.proj = conv_norm_act(dim, in_chans, 1, act=None)
        self.fusion = conv_norm_act(2 * in_chans, in_chans, 1, act=act) if fusion else None

    def forward(self, x):
        y = self.proj(self.norm(self.blocks(x)))
        return self.fusion(torch.cat([x, y], dim=1)) if self.fusion is not None else y


class AFFNet(ClassifierApi, nn.Module):
    """AFFNet classifier with the timm model API. `channels` are the five stage widths; `depths` the AFF block
    counts of stages 3–5; `ffn_ratio` the MV2 expansion inside the AFF blocks (ffn_dim / dim).

    Features (timm): `feature_info` lists the five stages layer1–layer5 (strides 2–32, or 1–8 with the CIFAR
    stem), the multi-scale maps the AFF paper's DeepLabv3 and SSDLite heads read; `global_pool=''` leaves the
    head's feature map unpooled. `output_stride` (32 default; 16 or 8) is DeepLab's atrous backbone (Chen et
    al. 2017, arXiv 1706.05587; ml-cvnets' `dilate_l4`/`dilate_l5`): a stage whose downsampling would take the
    total stride past it keeps stride 1 instead, and every 3×3 depth-wise conv after that point is dilated by
    the stride it gave up (the first conv of that stage by the dilation before it), so the receptive field is
    the undilated net's while the maps stay at 1/output_stride. The AFF filter works on any map size (its
    mask is a 1×1 conv over the spectrum), so no weight changes shape: the parameter count is the same.

    Options where the official code is ambiguous (docs/models.md): `attn_norm` ("layer_norm_2d" default, or
    "layer_norm", see `attn_norm_layer`); `init` "mixlab" (default: Kaiming fan-out convs, unit/zero norms,
    trunc-normal(0.02) linear with zero bias, the initialisation ml-cvnets gives its other classifiers, and
    the AFF mask biases left out of weight decay) or "official" (AFFNet's `reset_parameters` initialises
    nothing, so every layer keeps PyTorch's default, and the official optimizer decays the mask biases).
    """

    default_norm = "unit"   # ml-cvnets' ImageNet pipeline: ToTensor only (mixlab.data.normalization)
    first_conv, classifier = "stem.0", "head"   # timm's pretrained-cfg keys (mixlab.timm_models)
    stage_names = ("layer1", "layer2", "layer3", "layer4", "layer5")

    @staticmethod
    def stage_strides(cifar_stem=False, output_stride=32):
        """Total stride after each stage: 2–32, or 1–8 with the CIFAR stem (stride 1 in the stem and layer2),
        capped at `output_stride`."""
        e = 1 if cifar_stem else 2
        return tuple(min(s, output_stride) for s in (e, e * e, 2 * e ** 2, 4 * e ** 2, 8 * e ** 2))

    @classmethod
    def timm_cfg(cls, cifar_stem=False, output_stride=32, **_):
        """forward_features' stride, for timm's pretrained cfg without building the model."""
        return {"reduction": cls.stage_strides(cifar_stem, output_stride)[-1]}

    def __init__(self, channels=(32, 64, 128, 256, 320), depths=(2, 4, 3), mv2_expand=4, ffn_ratio=2.0,
                 stem_chans=16, head_exp=4, head_max=960, num_classes=1000, in_chans=3, img_size=256,
                 act="silu", drop_rate=0.0, drop_path_rate=0.0, fusion=True, fft_impl="torch", global_pool="avg",
                 cifar_stem=False, attn_norm="layer_norm_2d", init="mixlab", output_stride=32):
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"AFFNet: output_stride must be one of {list(OUTPUT_STRIDES)}, got {output_stride!r}")
        if init not in INITS:
            raise ValueError(f"AFFNet: unknown init {init!r}; choose one of {list(INITS)}")
        attn_norm_layer(attn_norm, 1)   # refuse an unknown norm before building anything
        self.init = init
        act_layer = named_act_layer(act, "AFFNet")
        if len(channels) != 5 or len(depths) != 3:
            raise ValueError(f"AFFNet needs 5 stage widths and 3 AFF depths, got {channels} and {depths}")
        check_pool(global_pool)
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.global_pool = global_pool
        self.grad_checkpointing = False
        # cifar_stem keeps full resolution through the stem and layer2 (total stride 8, not 32), as CIFAR
        # ResNets do: at 32 px the AFF stages then filter 16², 8² and 4² maps instead of 4², 2² and 1².
        early_stride = 1 if cifar_stem else 2
        self.stem = conv_norm_act(in_chans, stem_chans, 3, early_stride, act=act_layer)
        c1, c2 = channels[:2]
        self.layer1 = InvertedResidual(stem_chans, c1, 1, mv2_expand, act=act_layer)
        self.layer2 = nn.Sequential(*[InvertedResidual(c1 if i == 0 else c2, c2, early_stride if i == 0 else 1,
                                                       mv2_expand, act=act_layer) for i in range(3)])
        total = sum(depths)
        dpr = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        stages, prev, start = [], c2, 0
        stride, dilation = (early_stride ** 2), 1
        for dim, depth in zip(channels[2:], depths):
            first_dilation, step = dilation, 2
            if stride * 2 > output_stride:   # DeepLab: give up the downsampling, dilate from here on
                dilation, step = dilation * 2, 1
            stride *= step
            stages.append(nn.Sequential(
                InvertedResidual(prev, dim, step, mv2_expand, act=act_layer, dilation=first_dilation),
                AFFBlock(dim, dim, int(ffn_ratio * dim), depth, act=act_layer, mask_act=act,
                         drop_path=dpr[start:start + depth], fusion=fusion, fft_impl=fft_impl,
                         attn_norm=attn_norm, dilation=dilation)))
            prev, start = dim, start + depth
        self.layer3, self.layer4, self.layer5 = stages
        strides = self.stage_strides(cifar_stem, output_stride)
        self.feature_info = [dict(num_chs=c, reduction=r, module=n)
                             for c, r, n in zip(channels, strides, self.stage_names)]
        self.num_features = self.head_hidden_size = min(head_exp * prev, head_max)
        self.conv_head = conv_norm_act(prev, self.num_features, 1, act=act_layer)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        # On the meta device there are no values to initialise; "official" keeps PyTorch's defaults.
        if init == "mixlab" and not self.stem[0].weight.is_meta:
            self.apply(_init_weights)

    # --- timm model API -------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        """The AFF mask biases are multi-dimensional, so optimizers that skip 1-D tensors would decay them;
        `init="official"` decays them, as the official optimizer does."""
        if self.init == "official":
            return set()
        return {n for n, _ in self.named_parameters() if n.endswith(("filter.b1", "filter.b2"))}

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        """Parameter groups for layer-wise lr decay: stem, each stage, the head conv."""
        return dict(stem=r"^stem", blocks=[(r"^layer(\d+)", None), (r"^conv_head", (99999,))])

    def _stage(self, stage, x):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward_features(self, x):
        """Images [B, C, H, W] → feature map [B, num_features, H/s, W/s], s the output stride (after the 1×1 head conv)."""
        x = self.stem(x)
        for name in self.stage_names:
            x = self._stage(getattr(self, name), x)
        return self.conv_head(x)

    def forward_intermediates(self, x, indices=None, norm=False, stop_early=False, output_fmt="NCHW",
                              intermediates_only=False):
        """(final features, [outputs of the selected stages layer1–layer5]); timm's contract.

        indices: None (all five), n (the last n) or a list; stop_early: skip the stages after the last selected
        one; output_fmt 'NCHW' or 'NLC' (flattened). `norm` is accepted for the contract: AFFNet has no final
        norm (its 1×1 head conv changes the width, so it is not applied to the stage outputs).
        """
        stages = [getattr(self, name) for name in self.stage_names]
        x, intermediates, complete = stage_intermediates(self.stem(x), stages, self._stage, indices, stop_early,
                                                         output_fmt)
        if intermediates_only:
            return intermediates
        return (self.conv_head(x) if complete else x), intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm=False, prune_head=True):
        """Replace the stages after the last of `indices` by identities; the head conv goes with them (or with
        prune_norm), so forward_features then ends at the last kept stage. Returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stage_names), indices)
        for name in self.stage_names[max_index + 1:]:
            setattr(self, name, nn.Identity())
        if prune_norm or max_index < len(self.stage_names) - 1:
            self.conv_head = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_head(self, x, pre_logits: bool = False):
        x = self.head_drop(pool2d(x, self.global_pool))
        return x if pre_logits else self.classify_map(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _init_weights(m):
    # ml-cvnets' defaults: Kaiming-normal (fan-out) convs, unit/zero norms, small-normal linear layers.
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
    elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def _register(name, source):
    def build(num_classes=1000, in_chans=3, img_size=256, **overrides):
        return AFFNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                      **{**AFFNET_CONFIGS[name], **overrides})

    build.__name__ = name
    register_model(name, model_class=AFFNet, model_kwargs=AFFNET_CONFIGS[name], family="affnet", paper=True,
                   input_size=(3, 256, 256), num_classes=1000, source=source, published=PUBLISHED[name])(build)


_register("affnet_et", "AFFNet-ET: microsoft/TokenMixers affnet mode 'xx_small' (arXiv 2307.14008)")
_register("affnet_t", "AFFNet-T: microsoft/TokenMixers affnet mode 'x_small' (arXiv 2307.14008)")
_register("affnet", "AFFNet: microsoft/TokenMixers affnet mode 'small' (arXiv 2307.14008)")


def _register_cifar(name):
    """The same widths and blocks with a CIFAR stem (stride 8 in all): mixlab's variant for 32 px inputs."""
    def build(num_classes=10, in_chans=3, img_size=32, **overrides):
        return AFFNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                      **{**AFFNET_CONFIGS[name], "cifar_stem": True, **overrides})

    build.__name__ = f"{name}_cifar"
    register_model(f"{name}_cifar", model_class=AFFNet, model_kwargs={**AFFNET_CONFIGS[name], "cifar_stem": True},
                   family="affnet", paper=False, input_size=(3, 32, 32), num_classes=10,
                   source=f"{name} with a stride-1 stem and layer2 for 32 px images (mixlab)",
                   norm="cifar10")(build)   # trained with the `mixlab` recipe: the dataset's own statistics


for _name in AFFNET_CONFIGS:
    _register_cifar(_name)
