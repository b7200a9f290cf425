"""A compact DDPM UNet for 28–32 px images, plain, with SE in every residual block, or with DIA: one DIA-LSTM
shared by all residual blocks of a resolution level (DIANet, arXiv 1905.10671; on a UNet, arXiv 2210.16101).

The network is the UNet of DDPM (Ho et al. 2020, arXiv 2006.11239), scaled down. It predicts the noise ε
of a noisy image x_t: `forward(x_t, t) -> ε̂` with the same shape as x_t.

    time embedding   e = SiLU(W₂ SiLU(W₁ sinusoid(t)))                    sinusoid of width C₀, e ∈ R^{4C₀}
    residual block   R = conv₂(drop(SiLU(GN(conv₁(SiLU(GN(x))) + W_e e))))   conv₂ starts at zero
                     S = x, or conv1×1(x) where the width changes
                     out = S + a ⊙ R,   a = 1 (plain) | SE(R) | h_t of the level's DIA-LSTM
    self-attention   x + conv1×1(softmax(QKᵀ/√C) V), Q, K, V = conv1×1(GN(x)) over the H·W positions, one head

Levels ℓ = 0 … L−1 run at H/2^ℓ with width C_ℓ = C₀·mult_ℓ. Down path: a conv3×3 stem, then per level
`num_res_blocks` blocks and a stride-2 conv3×3 (not after the last level); every activation is kept for a
skip. Middle (at the lowest resolution): block, self-attention (`mid_attention`), block. Up path, from the
lowest level: `num_res_blocks + 1` blocks, each taking the next kept activation by concatenation, then a
nearest ×2 upsampling + conv3×3 (not after level 0). Output: GN → SiLU → conv3×3 (starts at zero).

Where the recalibration sits: on the residual branch R, before the skip addition, as SE sits in SE-ResNet and
DIA in DIANet. SE (Hu et al., arXiv 1709.01507): a = σ(W₂ ReLU(W₁ GAP(R))), W₁ ∈ R^{C/16×C}, one module per
block (reduction 16, SENet's and DIANet's SE baseline). DIA: a_t, state_t = DIA-LSTM_ℓ(GAP(R_t), state_{t−1}).

How DIA is shared. DIANet creates one LSTM per stage, a run of blocks with one width and resolution, starts its
state at zero at the stage's first block and carries it from block to block. In this UNet every residual
block of level ℓ (down, middle if ℓ is the lowest, up) outputs C_ℓ channels at H/2^ℓ, so a level is one
stage: one `DIALSTMCell(C_ℓ)` per level, its state zero at the level's first down block and carried in
forward order through the level's down blocks, the middle blocks (lowest level only) and the level's up
blocks. Between a level's down and up blocks the deeper levels run; the state waits, as the skip
activations do, so the up path's attention is conditioned on what the down path saw at that resolution.
A second LSTM per level for the up path would double DIA's parameters; sharing is the point of DIA. The
parameters grow with the number of levels, not with `num_res_blocks`.

timm API: `in_chans` and `img_size` as in every mixlab model (any H, W divisible by 2^(L−1) work; `img_size`
is the size samples are drawn at). A denoiser has no classifier: `num_classes` must be 0 (the model is
unconditional), and `forward_features` / `forward_head` / `reset_classifier` do not apply.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import SEModule

from ..layers.dia import DIALSTMCell
from ..registry import register_model


def timestep_embedding(t, dim, max_period=10000.0, dtype=torch.float32):
    """[sin(t·ω_k), cos(t·ω_k)]_{k<dim/2} with ω_k = max_period^(−k/(dim/2 − 1)): the Transformer's sinusoid
    as DDPM uses it for the timestep. t: [B] (integer or real); returns [B, dim] in `dtype` (float32 at least:
    sin(t·ω) for t up to 1000 needs it)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / (half - 1))
    angles = t.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _zero(module):
    """DDPM starts the last conv of every residual branch and of the output at zero, so each block begins
    as its skip path and the untrained net predicts ε̂ = 0."""
    nn.init.zeros_(module.weight)
    nn.init.zeros_(module.bias)
    return module


class ResBlock(nn.Module):
    """DDPM residual block split into its branches: `branches(x, e) -> (R, S)`; the UNet recalibrates R and
    adds S. `se` holds this block's own SE module when the UNet uses SE (None otherwise)."""

    def __init__(self, in_chans, out_chans, emb_dim, norm_groups, drop_rate=0.0, se_reduction=None):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, in_chans)
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_chans)
        self.norm2 = nn.GroupNorm(norm_groups, out_chans)
        self.drop = nn.Dropout(drop_rate)
        self.conv2 = _zero(nn.Conv2d(out_chans, out_chans, 3, padding=1))
        self.shortcut = nn.Identity() if in_chans == out_chans else nn.Conv2d(in_chans, out_chans, 1)
        self.se = SEModule(out_chans, rd_channels=max(1, out_chans // se_reduction)) if se_reduction else None

    def branches(self, x, emb):
        """emb is the activated time embedding SiLU(e) (computed once per forward)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        r = self.conv2(self.drop(F.silu(self.norm2(h))))
        return r, self.shortcut(x)


class SelfAttention(nn.Module):
    """DDPM's attention block: x + conv1×1(softmax(QKᵀ/√C) V), Q, K, V = conv1×1(GN(x)), over H·W tokens."""

    def __init__(self, chans, norm_groups):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, chans)
        self.qkv = nn.Conv2d(chans, 3 * chans, 1)
        self.proj = _zero(nn.Conv2d(chans, chans, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)  # [B, 1, HW, C]
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """The residual blocks of one level on one path, then the resampling conv (None at the path's end)."""

    def __init__(self, blocks, resample=None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class Upsample(nn.Module):
    def __init__(self, chans):
        super().__init__()
        self.conv = nn.Conv2d(chans, chans, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """DDPM UNet ε̂ = f(x_t, t); see the module docstring for the equations and where SE / DIA sit.

    base_chans C₀, chan_mult (mult_ℓ per level), num_res_blocks per level on the down path (the up path has
    one more, as in DDPM), mid_attention: self-attention between the two middle blocks, drop_rate: dropout
    inside every residual branch, norm_groups: GroupNorm groups (must divide every width), dia / se: the
    recalibration of every residual branch (at most one), dia_reduction / se_reduction: their bottlenecks.
    """

    first_conv, classifier = "stem", None   # timm's pretrained-cfg keys (mixlab.timm_models): no classifier

    def __init__(self, in_chans=3, img_size=32, num_classes=0, base_chans=32, chan_mult=(1, 2, 2),
                 num_res_blocks=1, mid_attention=True, drop_rate=0.1, norm_groups=8, dia=False, dia_reduction=4,
                 se=False, se_reduction=16):
        super().__init__()
        if num_classes:
            raise ValueError(f"the UNet is an unconditional denoiser: num_classes must be 0, got {num_classes} "
                             f"(create it with num_classes=0)")
        if dia and se:
            raise ValueError("choose one recalibration: dia=True or se=True, not both")
        widths = [base_chans * m for m in chan_mult]
        if base_chans % 2 or any(c % norm_groups for c in widths):
            raise ValueError(f"widths {widths} must be even and divisible by norm_groups={norm_groups}")
        self.num_levels = len(widths)
        self.downscale = 2 ** (self.num_levels - 1)
        if img_size % self.downscale:
            raise ValueError(f"img_size {img_size} must be divisible by {self.downscale} for {self.num_levels} "
                             f"levels; pick another size or chan_mult with fewer levels")
        self.num_classes, self.in_chans, self.img_size = 0, in_chans, img_size
        self.base_chans, self.widths = base_chans, widths
        emb_dim = 4 * base_chans
        block = dict(emb_dim=emb_dim, norm_groups=norm_groups, drop_rate=drop_rate,
                     se_reduction=se_reduction if se else None)

        self.time_embed = nn.Sequential(nn.Linear(base_chans, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(in_chans, base_chans, 3, padding=1)
        skip_widths, cur = [base_chans], base_chans
        down = []
        for level, width in enumerate(widths):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(cur, width, **block))
                cur = width
                skip_widths.append(cur)
            last = level == self.num_levels - 1
            down.append(Level(blocks, None if last else nn.Conv2d(cur, cur, 3, stride=2, padding=1)))
            if not last:
                skip_widths.append(cur)
        self.down = nn.ModuleList(down)
        self.mid = nn.ModuleList([ResBlock(cur, cur, **block), ResBlock(cur, cur, **block)])
        self.mid_attn = SelfAttention(cur, norm_groups) if mid_attention else nn.Identity()
        up = []
        for level in reversed(range(self.num_levels)):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(cur + skip_widths.pop(), widths[level], **block))
                cur = widths[level]
            up.append(Level(blocks, Upsample(cur) if level > 0 else None))
        self.up = nn.ModuleList(up)            # up[0] is the lowest level
        self.out_norm = nn.GroupNorm(norm_groups, cur)
        self.out_conv = _zero(nn.Conv2d(cur, in_chans, 3, padding=1))
        self.dia = nn.ModuleList([DIALSTMCell(w, dia_reduction) for w in widths]) if dia else None

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    def _residual(self, block, x, emb, level, state):
        """One residual block with its recalibration: (S + a ⊙ R, the level's DIA state after it)."""
        r, s = block.branches(x, emb)
        if self.dia is not None:
            attn, state = self.dia[level](r.mean(dim=(2, 3)), state)
            r = r * attn[:, :, None, None]
        elif block.se is not None:
            r = block.se(r)
        return s + r, state

    def _check(self, x, t):
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected images [B, {self.in_chans}, H, W], got shape {tuple(x.shape)}")
        if x.shape[2] % self.downscale or x.shape[3] % self.downscale:
            raise ValueError(f"image size {tuple(x.shape[2:])} must be divisible by {self.downscale} "
                             f"({self.num_levels} levels)")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have one timestep per image ({x.shape[0]}), got {tuple(t.shape)}")
        return t

    def forward(self, x, t):
        """x: noisy images [B, C, H, W]; t: timesteps [B] or a scalar. Returns ε̂ [B, C, H, W]."""
        t = self._check(x, t)
        precision = torch.float64 if x.dtype == torch.float64 else torch.float32
        emb = F.silu(self.time_embed(timestep_embedding(t, self.base_chans, dtype=precision).to(x.dtype)))
        states = [None] * self.num_levels     # one DIA state per level, zero at the level's first block
        h = self.stem(x)
        skips = [h]
        for level, stage in enumerate(self.down):
            for block in stage.blocks:
                h, states[level] = self._residual(block, h, emb, level, states[level])
                skips.append(h)
            if stage.resample is not None:
                h = stage.resample(h)
                skips.append(h)
        lowest = self.num_levels - 1
        h, states[lowest] = self._residual(self.mid[0], h, emb, lowest, states[lowest])
        h = self.mid_attn(h)
        h, states[lowest] = self._residual(self.mid[1], h, emb, lowest, states[lowest])
        for level, stage in zip(reversed(range(self.num_levels)), self.up):
            for block in stage.blocks:
                h, states[level] = self._residual(block, torch.cat([h, skips.pop()], dim=1), emb, level,
                                                  states[level])
            if stage.resample is not None:
                h = stage.resample(h)
        return self.out_conv(F.silu(self.out_norm(h)))


SIZES = {
    "tiny": dict(base_chans=32, chan_mult=(1, 2, 2), num_res_blocks=1, norm_groups=8),
    "small": dict(base_chans=64, chan_mult=(1, 2, 2), num_res_blocks=2, norm_groups=16),
}
VARIANTS = {
    "unet": ({}, "DDPM UNet (Ho et al., arXiv 2006.11239), scaled down for 28-32 px"),
    "se_unet": (dict(se=True), "DDPM UNet with SE (arXiv 1709.01507, reduction 16) in every residual block"),
    "dia_unet": (dict(dia=True), "DDPM UNet with one DIA-LSTM shared per resolution level "
                                 "(DIANet arXiv 1905.10671; UNet claim in arXiv 2210.16101)"),
}


def _register(name, base, source):
    def build(num_classes=0, in_chans=3, img_size=32, **overrides):
        return UNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **{**base, **overrides})

    build.__name__ = name
    # task: the engine trains it as a denoiser (mixlab.diffusion.task); recipe: what `--recipe auto` picks.
    register_model(name, model_class=UNet, model_kwargs=base, family="unet", paper=False, input_size=(3, 32, 32), num_classes=0, source=source,
                   task="diffusion", recipe="ddpm")(build)


for _size, _dims in SIZES.items():
    for _variant, (_extra, _source) in VARIANTS.items():
        _register(f"{_variant}_{_size}", {**_dims, **_extra}, _source)
