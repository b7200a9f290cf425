"""A hierarchical MetaFormer for small images, with the same pluggable token mixers as the isotropic backbone.

    stem (3×3 conv → BN → GELU, full resolution)
    → S stages: [BN → 2×2 conv stride 2 between stages] → D_s × block(width C_s)
    → BN → global average pool → linear head

    block:  x ← x + DropPath(mixer(BN₁(x)))          (any registered mixer, on the stage's token grid)
            x ← x + DropPath(W₂ · GELU(W₁ · BN₂(x)))  (1×1 convolutions: the per-token channel MLP)

This is the MetaFormer of Yu et al. (2022, "MetaFormer Is Actually What You Need for Vision", arXiv 2111.11418;
"MetaFormer Baselines for Vision", arXiv 2210.13452): a pyramid of stages whose token count falls 4× per
stage while the width doubles, so most of the compute is spent where the tokens are few. Isotropic patch-4
nets keep 64 tokens at one width throughout; at the same FLOPs a pyramid sees the 32×32 image at full
resolution in its first stage, which is what lets a CPU train a CIFAR-10 classifier to the 80-90 % range
within minutes (docs/RESULTS.md, "The CPU speed run"). Batch norm instead of layer norm, as ConvFormer
and PoolFormer-BN: it fuses into the convolutions and is cheaper on CPUs.

The blocks keep the activations as images [B, C, H, W] and hand the mixer its tokens [B, H·W, C] through
`image_to_tokens` / `tokens_to_image`. In channels-last memory both are views, so a mixer that works on the grid
(dwconv, pooling) costs no copy.
"""
import torch
from timm.layers import DropPath, trunc_normal_
from torch import nn

from ..layers.contract import capabilities, image_to_tokens, tokens_to_image
from ..layers.head import StagedApi, check_pool
from ..mixers import create_mixer, mixer_class
from ..registry import register_model, register_model_class


class HierarchicalBlock(nn.Module):
    """x ← x + DropPath(mixer(BN₁(x))); x ← x + DropPath(MLP(BN₂(x))) on one stage's [B, C, H, W] map."""

    def __init__(self, dim, grid, mixer, mixer_kwargs, mlp_ratio, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.token_mixer = create_mixer(mixer, dim, grid[0] * grid[1], grid, **(mixer_kwargs or {}))
        self.norm2 = nn.BatchNorm2d(dim)
        hidden = int(round(mlp_ratio * dim))
        self.fc1, self.act, self.fc2 = nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        grid = (x.shape[-2], x.shape[-1])
        mixed = self.token_mixer(image_to_tokens(self.norm1(x)), grid=grid)
        x = x + self.drop_path(tokens_to_image(mixed, grid))
        return x + self.drop_path(self.fc2(self.act(self.fc1(self.norm2(x)))))


class HierarchicalStage(nn.Module):
    """[BN → 2×2 conv stride 2 (the downsampling, absent in the first stage)] → the stage's blocks."""

    def __init__(self, in_chans, dim, depth, grid, downsample, mixer, mixer_kwargs, mlp_ratio, drop_paths):
        super().__init__()
        self.downsample = nn.Sequential(nn.BatchNorm2d(in_chans), nn.Conv2d(in_chans, dim, 2, stride=2)) \
            if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[HierarchicalBlock(dim, grid, mixer, mixer_kwargs, mlp_ratio, drop_paths[i])
                                      for i in range(depth)])
        self.num_chs, self.stride = dim, 2 if downsample else 1

    def forward(self, x):
        return self.blocks(self.downsample(x))


@register_model_class
class HierarchicalNet(StagedApi, nn.Module):
    """Hierarchical MetaFormer classifier (the module docstring) with timm's model API.

    Args:
        widths / depths: channels and blocks of each stage; every stage after the first halves the resolution.
        mixer / mixer_kwargs: the token mixer of every block (a registered name, e.g. 'dwconv', 'pooling',
            'attention', 'identity', or a class) and its options. A mixer with `fixed_tokens` (token_mlp,
            random) fixes the image size: each stage's token count is then img_size²/4^s.
        mlp_ratio: channel-MLP hidden width ÷ stage width.
        drop_path_rate: stochastic depth, rising linearly over all blocks from 0 to this value.
    Features (timm): one entry per stage (`stages.i`), stride 1, 2, 4, … of the input.
    """

    default_norm = "cifar10"
    first_conv, classifier = "stem.0", "head"

    @classmethod
    def timm_cfg(cls, widths=(64, 128, 256), mixer="dwconv", **_):
        return {"reduction": 2 ** (len(widths) - 1),
                "fixed_input_size": capabilities(mixer_class(mixer))["fixed_tokens"]}

    def __init__(self, img_size=32, in_chans=3, num_classes=10, widths=(64, 128, 256), depths=(2, 2, 2),
                 mixer="dwconv", mixer_kwargs=None, mlp_ratio=2.0, drop_path_rate=0.0, global_pool="avg",
                 model_name=None):
        init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        name = model_name or type(self).__name__
        widths, depths = tuple(widths), tuple(depths)
        if not widths or len(widths) != len(depths) or min(widths) < 1 or min(depths) < 1:
            raise ValueError(f"{name}: widths and depths need one positive entry per stage, got {widths} / {depths}")
        if img_size % 2 ** (len(widths) - 1):
            raise ValueError(f"{name}: image size {img_size} does not halve {len(widths) - 1} times")
        check_pool(global_pool)
        self.num_classes, self.in_chans, self.img_size, self.global_pool = num_classes, in_chans, img_size, global_pool
        self.grad_checkpointing = False
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]), nn.GELU())
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages, prev, size = [], widths[0], img_size
        for s, (w, d) in enumerate(zip(widths, depths)):
            size = size // 2 if s else size
            start = sum(depths[:s])
            stages.append(HierarchicalStage(prev, w, d, (size, size), s > 0, mixer, mixer_kwargs, mlp_ratio,
                                            rates[start:start + d]))
            prev = w
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(prev)
        self.num_features = self.head_hidden_size = prev
        self.head = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=w, reduction=2 ** s, module=f"stages.{s}") for s, w in enumerate(widths)]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.is_meta:   # meta: timm's registration probe
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.init_kwargs = init_kwargs

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        blocks = r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.blocks\.(\d+)"
        return dict(stem=r"^stem", blocks=[(blocks, None), (r"^stages\.(\d+)\.downsample", (0,)),
                                           (r"^norm", (99999,))])


# Named configs. `metaformer_speed`: the CPU speed run's net (docs/RESULTS.md): three stages at 32, 16 and 8 px,
# widths 48/96/192, depths 1/2/2, depth-wise 3×3 mixer (ConvMixer's), MLP ratio 2: 0.12 GFLOPs an image.
CONFIGS = {
    "metaformer_speed": dict(widths=(48, 96, 192), depths=(1, 2, 2), mixer="dwconv", mlp_ratio=2.0),
    "metaformer_small": dict(widths=(64, 128, 256), depths=(2, 2, 2), mixer="dwconv", mlp_ratio=2.0),
}


def _register(name, base):
    def build(num_classes=10, in_chans=3, img_size=32, **overrides):
        return HierarchicalNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, model_name=name,
                               **{**base, **overrides})

    build.__name__ = name
    register_model(name, model_class=HierarchicalNet, model_kwargs=base, family="metaformer", paper=False,
                   source="mixlab: hierarchical MetaFormer (Yu et al. 2022, arXiv 2111.11418), batch norm, "
                          "depth-wise 3×3 token mixer")(build)


for _name, _base in CONFIGS.items():
    _register(_name, _base)
