"""Strong augmentation, batched on the training device: RandAugment, random erasing, Mixup / CutMix.

Every image of a batch draws its own ops and magnitudes; per RandAugment layer the images are sorted by op
and the work is a few batched tensor ops per op group (one affine `grid_sample` for all geometric ops, one
gather through per-image lookup tables for the point, histogram and Contrast ops, one call each for Color
and Sharpness), with no per-image Python. The semantics are timm's (`timm.data.auto_augment`,
`random_erasing`, `mixup`), which the streaming path (stream.py) runs image by image on PIL images:

RandAugment `rand-m{M}-n{N}-mstd{σ}-mmax{U}-inc{0|1}-p{P}` (Cubuk et al. 2020, timm's variant): for each of
N layers an op is chosen uniformly with replacement from the 15 ops below (the "increasing" set with inc1),
applied with probability P (0.5); its magnitude m ~ N(M, σ) (σ > 100: U(0, M)) clipped to [0, U] (U = 10);
signed ops negate their argument with probability ½. Arguments from m (level = m/10):
    Rotate 30·level° · ±1, ShearX/Y 0.3·level · ±1, TranslateX/YRel 0.45·level·S · ±1 (PIL affine, the fill
    the run's mean colour, bilinear), Posterize bits int(4·level) (inc: 4 − that), Solarize threshold
    min(256, int(256·level)) (inc: 256 − that), SolarizeAdd +min(128, int(110·level)) below 128,
    Color/Contrast/Brightness/Sharpness factor 1.8·level + 0.1 (inc: max(0.1, 1 ± 0.9·level)),
    AutoContrast, Equalize, Invert (PIL ImageOps, no argument).
Random erasing (Zhong et al. 2020) with probability p: a box of area U(0.02, 1/3)·HW and aspect ratio
exp U(log 0.3, log 1/0.3), first of 10 tries that fits, placed uniformly, filled with N(0, 1) noise per
pixel (timm's `pixel` mode) in normalised units; the noise is drawn per global batch for its erased
elements only, in (image, channel, row, column) order.
Mixup (Zhang et al. 2018) / CutMix (Yun et al. 2019), one draw per batch (timm's `batch` mode): with
probability `mix_prob`, CutMix with probability `switch_prob` (λ ~ Beta(αc, αc), a box of side ⌊√(1−λ)·S⌋
centred uniformly, clipped, λ corrected to the kept area) else Mixup (λ ~ Beta(αm, αm)); every image is
mixed with the batch reversed, and the targets are λ·ỹ + (1 − λ)·ỹ_reversed with ỹ the one-hot smoothed by ε
(on 1 − ε + ε/K, off ε/K).

All draws come from generators seeded by (seed, epoch) (`Augmentation.plan`), by epoch position for the
per-image draws and by global batch for Mixup/CutMix, so a batch is a pure function of (seed, epoch,
position): resume is bit-exact and DDP ranks, which take disjoint positions, draw disjoint streams.
"""
import functools
import hashlib
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LEVEL_DENOM = 10.0
TRANSLATE_PCT = 0.45
RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                       "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                       "TranslateYRel")
AFFINE_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
ENHANCE_OPS = ("Color", "Contrast", "Brightness", "Sharpness")
# ops that are one lookup table per image (and channel) of the image's levels: image-independent point ops
# and the histogram / mean ops (their table read from the image); Color and Sharpness mix pixels
POINT_OPS = ("Invert", "Posterize", "PosterizeIncreasing", "Solarize", "SolarizeIncreasing", "SolarizeAdd",
             "Brightness", "BrightnessIncreasing")
TABLE_OPS = POINT_OPS + ("AutoContrast", "Equalize", "Contrast", "ContrastIncreasing")
ERASE_AREA = (0.02, 1 / 3)
ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))
ERASE_TRIES = 10


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed timm RandAugment string, e.g. `rand-m9-mstd0.5-inc1`."""
    text: str
    magnitude: float = 10.0
    num_layers: int = 2
    prob: float = 0.5
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_DENOM
    increasing: bool = False

    @property
    def ops(self):
        return RAND_INCREASING_OPS if self.increasing else RAND_OPS


def parse_randaugment(text):
    """`RandAugmentSpec` of a timm RandAugment string, or a one-line ValueError naming the bad part."""
    if not isinstance(text, str) or not text.startswith("rand"):
        raise ValueError(f"randaugment must be a timm RandAugment string such as 'rand-m9-mstd0.5-inc1', got {text!r}")
    parts = text.split("-")
    if parts[0] != "rand":
        raise ValueError(f"randaugment {text!r} must start with 'rand-'")
    values = {}
    for part in parts[1:]:
        match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d+(?:\.\d*)?)", part)
        if not match:
            raise ValueError(f"randaugment {text!r}: unknown section {part!r} (known: m, n, p, mstd, mmax, inc)")
        values[match.group(1)] = float(match.group(2))
    mstd = values.get("mstd", 0.0)
    spec = RandAugmentSpec(text=text, magnitude=float(int(values.get("m", LEVEL_DENOM))),
                           num_layers=int(values.get("n", 2)), prob=values.get("p", 0.5),
                           magnitude_std=math.inf if mstd > 100 else mstd,
                           magnitude_max=float(int(values.get("mmax", LEVEL_DENOM))) or LEVEL_DENOM,
                           increasing=bool(int(values.get("inc", 0))))
    if spec.num_layers < 1 or not 0 < spec.prob <= 1:
        raise ValueError(f"randaugment {text!r}: n must be >= 1 and p in (0, 1]")
    return spec


def _generator(tag, seed, epoch):
    digest = hashlib.sha256(f"mixlab.augment.{tag}:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# --- the per-image and per-batch draws ------------------------------------------------------------------------
def draw_randaugment(spec, n, generator):
    """{op [n, L] (index into spec.ops), apply [n, L] bool, magnitude [n, L] float64, sign [n, L] ±1}."""
    shape = (n, spec.num_layers)
    op = torch.randint(0, len(spec.ops), shape, generator=generator)
    apply = torch.rand(shape, generator=generator, dtype=torch.float64) <= spec.prob
    if spec.magnitude_std == math.inf:
        magnitude = torch.rand(shape, generator=generator, dtype=torch.float64) * spec.magnitude
    elif spec.magnitude_std > 0:
        magnitude = spec.magnitude + spec.magnitude_std * torch.randn(shape, generator=generator, dtype=torch.float64)
    else:
        magnitude = torch.full(shape, spec.magnitude, dtype=torch.float64)
    magnitude = magnitude.clamp(0.0, spec.magnitude_max)
    sign = torch.where(torch.rand(shape, generator=generator) < 0.5, 1.0, -1.0).double()
    return {"op": op, "apply": apply, "magnitude": magnitude, "sign": sign}


def level_arg(name, magnitude, sign, size=None):
    """timm's level → argument of op `name` for float64 magnitudes (and signs ±1), elementwise.
    Translations are returned in pixels of an image of side `size` (timm: pct · width)."""
    level = magnitude / LEVEL_DENOM
    if name == "Rotate":
        return level * 30.0 * sign
    if name in ("ShearX", "ShearY"):
        return level * 0.3 * sign
    if name in ("TranslateXRel", "TranslateYRel"):
        return level * TRANSLATE_PCT * sign * (size if size is not None else 1.0)
    if name == "Posterize":
        return torch.floor(level * 4)
    if name == "PosterizeIncreasing":
        return 4 - torch.floor(level * 4)
    if name == "Solarize":
        return torch.floor(level * 256).clamp(max=256)
    if name == "SolarizeIncreasing":
        return 256 - torch.floor(level * 256).clamp(max=256)
    if name == "SolarizeAdd":
        return torch.floor(level * 110).clamp(max=128)
    if name in ENHANCE_OPS:
        return level * 1.8 + 0.1
    if name.endswith("Increasing") and name[:-len("Increasing")] in ENHANCE_OPS:
        return (1.0 + level * 0.9 * sign).clamp(min=0.1)
    return torch.zeros_like(magnitude)


def level_args(ops: tuple, op: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, height: int,
               width: int) -> torch.Tensor:
    """`level_arg` of each draw's own op, elementwise over any shape: op (index into `ops`), magnitude and
    sign (float64) of the same shape; TranslateXRel in pixels of the width, TranslateYRel of the height."""
    out = torch.zeros_like(magnitude)
    for k, name in enumerate(ops):
        out = torch.where(op == k, level_arg(name, magnitude, sign, width if name == "TranslateXRel" else height), out)
    return out


def draw_erasing(prob, n, height, width, generator):
    """[n, 4] boxes (top, left, h, w) of random erasing for n images height×width; h = 0: not erased."""
    u = torch.rand(n, 1 + 4 * ERASE_TRIES, generator=generator, dtype=torch.float64)
    area = height * width * (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * u[:, 1:1 + ERASE_TRIES])
    ratio = torch.exp(ERASE_LOG_RATIO[0] + (ERASE_LOG_RATIO[1] - ERASE_LOG_RATIO[0]) *
                      u[:, 1 + ERASE_TRIES:1 + 2 * ERASE_TRIES])
    h = torch.round(torch.sqrt(area * ratio)).long()
    w = torch.round(torch.sqrt(area / ratio)).long()
    fits = (h < height) & (w < width)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    take = first.clamp(min=0)[:, None]
    h, w = h.gather(1, take)[:, 0], w.gather(1, take)[:, 0]
    top = torch.floor(u[:, 1 + 2 * ERASE_TRIES:1 + 3 * ERASE_TRIES].gather(1, take)[:, 0] * (height - h + 1)).long()
    left = torch.floor(u[:, 1 + 3 * ERASE_TRIES:].gather(1, take)[:, 0] * (width - w + 1)).long()
    erased = (u[:, 0] <= prob) & (first >= 0)
    boxes = torch.stack([top, left, h, w], 1)
    return torch.where(erased[:, None], boxes, torch.zeros_like(boxes))


def draw_mix(num_batches, height, width, mixup, cutmix, mix_prob, switch_prob, rng):
    """[num_batches, 6] float64 rows (λ, use_cutmix, top, bottom, left, right) of timm's batch-mode
    Mixup/CutMix; λ = 1 leaves a batch unmixed; for CutMix λ is already corrected to the kept area."""
    rows = np.zeros((num_batches, 6))
    rows[:, 0] = 1.0
    for g in range(num_batches):
        if rng.random() >= mix_prob:
            continue
        use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < switch_prob)
        lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
        if use_cutmix:
            ratio = math.sqrt(1 - lam)
            cut_h, cut_w = int(height * ratio), int(width * ratio)
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
            # [c − ⌊k/2⌋, c + ⌈k/2⌉): a box of side k exactly, before clipping (timm ≥ 1.0)
            yl, yh = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + (cut_h + 1) // 2, 0, height)
            xl, xh = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + (cut_w + 1) // 2, 0, width)
            lam = 1.0 - float((yh - yl) * (xh - xl)) / float(height * width)
            rows[g] = (lam, 1.0, yl, yh, xl, xh)
        else:
            rows[g] = (lam, 0.0, 0, 0, 0, 0)
    return rows


# --- the batched ops --------------------------------------------------------------------------------------------
def _gray(x):
    """PIL's L of RGB (ITU-R 601-2 in 16-bit fixed point), int32 [B, 1, H, W]; a 1-channel image is itself."""
    x = x.to(torch.int32)
    if x.shape[1] == 1:
        return x
    return (x[:, 0:1] * 19595 + x[:, 1:2] * 38470 + x[:, 2:3] * 7471 + 0x8000) >> 16


def _blend(degenerate, image, factor):
    """PIL Image.blend(degenerate, image, factor): degenerate + factor·(image − degenerate) in float32,
    truncated and clipped to 0..255."""
    f = factor.to(torch.float32).view(-1, 1, 1, 1)
    d = degenerate.to(torch.float32)
    return torch.trunc(d + f * (image.to(torch.float32) - d)).clamp_(0, 255).to(torch.uint8)


def _smooth(x):
    """PIL ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13, rounded), border pixels kept. In integers:
    round(Σ/13) = (2Σ + 13) // 26 of the weighted 3×3 sum Σ (Σ/13 is never within 1/26 of a half-integer, so
    this is the float filter's rounding exactly), with shifted adds instead of a 1-channel convolution."""
    v = x.to(torch.int32)
    rows = v[:, :, :-2] + v[:, :, 1:-1] + v[:, :, 2:]
    total = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:] + 4 * v[:, :, 1:-1, 1:-1]
    result = x.clone()
    result[:, :, 1:-1, 1:-1] = torch.div(2 * total + 13, 26, rounding_mode="floor").to(torch.uint8)
    return result


def _lut(x, table):
    """Per-(image, channel) lookup: x uint8 [B, C, H, W], table [B, C, 256] (or [B, 1, 256])."""
    b, c, h, w = x.shape
    table = table.expand(b, c, 256).to(torch.uint8).reshape(b * c, 256)
    return table.gather(1, x.reshape(b * c, h * w).long()).view(b, c, h, w)


def _histogram(x):
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    return torch.zeros(b * c, 256, dtype=torch.int64, device=x.device).scatter_add_(
        1, flat, torch.ones_like(flat)).view(b, c, 256)


def equalize(x):
    """PIL ImageOps.equalize per channel: step = (N − count of the top level) // 256, lut[i] =
    (step // 2 + #pixels below i) // step; identity where step is 0."""
    return _lut(x, equalize_table(_histogram(x)))


def equalize_table(hist: torch.Tensor) -> torch.Tensor:
    """`equalize`'s table [B, C, 256] (int64) of per-channel histograms hist [B, C, 256]."""
    levels = torch.arange(256, device=hist.device)
    top = torch.where(hist > 0, levels, -1).amax(-1, keepdim=True)
    step = (hist.sum(-1, keepdim=True) - hist.gather(-1, top.clamp(min=0))) // 256
    below = hist.cumsum(-1) - hist
    safe = step.clamp(min=1)
    table = ((safe // 2 + below) // safe).clamp(max=255)
    return torch.where(step > 0, table, levels)


def auto_contrast(x):
    """PIL ImageOps.autocontrast per channel: lut[i] = clip(int(i·255/(hi − lo) − lo·255/(hi − lo)))."""
    return _lut(x, auto_contrast_table(_histogram(x)))


def auto_contrast_table(hist: torch.Tensor) -> torch.Tensor:
    """`auto_contrast`'s table [B, C, 256] (float64, integer-valued) of per-channel histograms [B, C, 256]."""
    levels = torch.arange(256, device=hist.device, dtype=torch.float64)
    present = hist > 0
    lo = torch.where(present, levels, 256.0).amin(-1, keepdim=True)
    hi = torch.where(present, levels, -1.0).amax(-1, keepdim=True)
    # tensor / tensor is IEEE division (a Python scalar over a tensor goes through a reciprocal, which
    # misses PIL's levels by one where i·scale + offset lands on an integer)
    scale = torch.full_like(lo, 255.0) / (hi - lo).clamp(min=1)
    table = torch.trunc(levels * scale + (-(lo * scale))).clamp(0, 255)
    return torch.where(hi > lo, table, levels)


def affine(x, matrices, fill):
    """PIL's AFFINE transform with bilinear resampling: out(u) = x(A·u + t) in pixel-centre coordinates
    (pixel i at i + ½), `matrices` [B, 2, 3] = [A | t]. Points that map outside the image take `fill` (the
    run's mean colour) whole, as PIL does; inside, bilinear with edges clamped (grid_sample, border mode)."""
    b, c, h, w = x.shape
    m = matrices.to(x.device, torch.float64)
    uj = torch.arange(w, dtype=torch.float64, device=x.device) + 0.5
    ui = torch.arange(h, dtype=torch.float64, device=x.device) + 0.5
    # grid_sample's normalised g = 2·u_in/size − 1 (align_corners=False) of u_in = A·u + t, as a column term
    # plus a row term (float64, one full-size add each; no batched matmul over the grid points)
    gx = (m[:, 0, 0, None] * uj * (2.0 / w))[:, None, :] + ((m[:, 0, 1, None] * ui + m[:, 0, 2, None]) * (2.0 / w) - 1.0)[:, :, None]
    gy = (m[:, 1, 0, None] * uj * (2.0 / h))[:, None, :] + ((m[:, 1, 1, None] * ui + m[:, 1, 2, None]) * (2.0 / h) - 1.0)[:, :, None]
    inside = ((gx >= -1) & (gx < 1) & (gy >= -1) & (gy < 1))[:, None]   # 0 ≤ u_in < size
    grid = torch.stack([gx, gy], -1).to(torch.float32)
    sampled = F.grid_sample(x.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False)
    fill_t = torch.as_tensor(fill, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    out = torch.where(inside, sampled, fill_t)
    return torch.floor(out + 0.5).clamp_(0, 255).to(torch.uint8)


def affine_matrices(kinds, args: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, 2, 3] float64 PIL affine coefficients [A | t] of per-image geometric ops: `kinds` [B] (index into
    AFFINE_OPS, or a list of their names) with float64 `args` [B] (degrees, shear, pixels). The identity plus
    the op's coefficient; Rotate by v° counter-clockwise about the centre (w/2, h/2) as PIL's Image.rotate,
    cos and sin rounded to 15 decimals as PIL does (torch's rounding: within 1e-15 of Python's `round`)."""
    if not isinstance(kinds, torch.Tensor):
        kinds = torch.tensor([AFFINE_OPS.index(name) for name in kinds], dtype=torch.long)
    v = torch.as_tensor(args, dtype=torch.float64).reshape(-1)
    kinds = kinds.reshape(-1).to(v.device)
    rad = v * (math.pi / 180.0)   # math.radians' constant
    cos, sin = torch.round(torch.cos(rad), decimals=15), torch.round(torch.sin(rad), decimals=15)
    cx, cy = w / 2.0, h / 2.0
    rotate = torch.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy], 1)
    zero, one = torch.zeros_like(v), torch.ones_like(v)
    # the one coefficient each of ShearX, ShearY, TranslateXRel, TranslateYRel sets: A[0,1], A[1,0], t[0], t[1]
    m = torch.stack([one, torch.where(kinds == 1, v, zero), torch.where(kinds == 3, v, zero),
                     torch.where(kinds == 2, v, zero), one, torch.where(kinds == 4, v, zero)], 1)
    return torch.where((kinds == 0)[:, None], rotate, m).view(-1, 2, 3)


def apply_op(name, x, arg, fill):
    """Op `name` of every image of x (uint8 [B, C, H, W]) with its own float64 argument arg [B]."""
    dev = x.device
    if name == "AutoContrast":
        return auto_contrast(x)
    if name == "Equalize":
        return equalize(x)
    if name == "Invert":
        return 255 - x
    if name.startswith("Posterize"):
        bits = arg.to(dev).long().clamp(0, 8)
        mask = (~((1 << (8 - bits)) - 1)) & 255
        return (x.to(torch.int64) & mask.view(-1, 1, 1, 1)).to(torch.uint8)
    if name.startswith("Solarize") and name != "SolarizeAdd":
        thresh = arg.to(dev).view(-1, 1, 1, 1)
        return torch.where(x.to(torch.float64) >= thresh, 255 - x, x)
    if name == "SolarizeAdd":
        add = arg.to(dev).long().view(-1, 1, 1, 1)
        return torch.where(x < 128, (x.to(torch.int64) + add).clamp(max=255).to(torch.uint8), x)
    base = name[:-len("Increasing")] if name.endswith("Increasing") else name
    factor = arg.to(dev)
    if base == "Brightness":
        return _blend(torch.zeros_like(x), x, factor)
    if base == "Color":
        return _blend(_gray(x).expand_as(x), x, factor)
    if base == "Contrast":
        mean = _gray(x).to(torch.float64).mean((1, 2, 3), keepdim=True)
        return _blend(torch.floor(mean + 0.5).expand_as(x), x, factor)
    if base == "Sharpness":
        return _blend(_smooth(x), x, factor)
    raise ValueError(f"unknown RandAugment op {name!r}")


def point_table(name: str, arg: torch.Tensor) -> torch.Tensor:
    """uint8 [n, 256]: level v → the image-independent point op `name` (POINT_OPS) of v, each row with its own
    float64 argument arg [n]. It is `apply_op` on an image holding the 256 levels (the same arithmetic), so
    a gather through the table equals the op exactly."""
    levels = torch.arange(256, dtype=torch.uint8, device=arg.device).view(1, 1, 1, 256).expand(len(arg), 1, 1, 256)
    return apply_op(name, levels, arg, None).reshape(len(arg), 256)


def contrast_table(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 1, 256]: PIL ImageEnhance.Contrast's table of each image of x (uint8 [B, C, H, W]), the
    blend of every level with the image's rounded mean grey level (as `apply_op`, whose per-pixel blend
    it tabulates)."""
    mean = _gray(x).to(torch.float64).mean((1, 2, 3), keepdim=True)
    levels = torch.arange(256, dtype=torch.uint8, device=x.device).view(1, 1, 1, 256)
    return _blend(torch.floor(mean + 0.5), levels, factor.to(x.device)).view(len(x), 1, 256)


def op_table(name: str, x: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C or 1, 256]: the lookup table of table op `name` (TABLE_OPS) for each image of x (uint8
    [B, C, H, W]) with its own float64 argument arg [B]: the point ops tabulated from the argument, the
    histogram ops from the image's per-channel histogram, Contrast from its mean grey level."""
    if name in POINT_OPS:
        return point_table(name, arg.to(x.device))[:, None]
    if name == "Equalize":
        return equalize_table(_histogram(x)).to(torch.uint8)
    if name == "AutoContrast":
        return auto_contrast_table(_histogram(x)).to(torch.uint8)
    if name in ("Contrast", "ContrastIncreasing"):
        return contrast_table(x, arg)
    raise ValueError(f"{name!r} is not a table op (one of {', '.join(TABLE_OPS)})")


@functools.lru_cache(maxsize=None)
def _op_order(ops):
    """The ops of `ops` ordered geometric, table ops, pixel ops (Color, Sharpness), as op indices; the
    position of each op in that order; and the number of geometric and of table ops."""
    order = sorted(range(len(ops)), key=lambda k: 0 if ops[k] in AFFINE_OPS else 1 if ops[k] in TABLE_OPS else 2)
    position = torch.empty(len(ops), dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(len(ops))
    kind = torch.tensor([AFFINE_OPS.index(name) if name in AFFINE_OPS else -1 for name in ops])
    return order, position, kind, sum(ops[k] in AFFINE_OPS for k in order), sum(ops[k] in TABLE_OPS for k in order)


def randaugment(x, draws, spec, fill):
    """RandAugment of uint8 images x [B, C, H, W] with per-image `draws` (`draw_randaugment` rows of these
    images, plus their `level_args` as "arg" when the plan has them). Per layer every image takes its own
    op, so the images sorted by op (geometric, table ops, pixel ops) form contiguous runs: one gather of the
    images with an op, the geometric ops in one affine warp (matrices built with tensor ops), the table ops
    (TABLE_OPS) in one gather through per-image tables, Color and Sharpness one call per op, and one
    write-back."""
    b, c, h, w = x.shape
    ops = spec.ops
    order, position, kind, n_geometric, n_table = _op_order(ops)
    args = draws.get("arg")
    if args is None:
        args = level_args(ops, draws["op"], draws["magnitude"], draws["sign"], h, w)
    x = x.clone()   # written in place below; the caller's images stay as they were
    for layer in range(spec.num_layers):
        op, arg = draws["op"][:, layer], args[:, layer]
        key = torch.where(draws["apply"][:, layer], position[op], len(ops))   # len(ops): no op this layer
        counts = torch.bincount(key, minlength=len(ops) + 1).tolist()
        chosen = b - counts[-1]
        if chosen == 0:
            continue
        idx = torch.argsort(key, stable=True)[:chosen]
        op, arg = op[idx], arg[idx]
        idx = idx.to(x.device)
        sub = x[idx]
        outs, start = [], 0
        geometric = sum(counts[:n_geometric])
        if geometric:
            outs.append(affine(sub[:geometric], affine_matrices(kind[op[:geometric]], arg[:geometric], h, w), fill))
            start = geometric
        tables, first = [], start
        for r in range(n_geometric, n_geometric + n_table):
            if counts[r]:
                part = slice(start, start + counts[r])
                tables.append(op_table(ops[order[r]], sub[part], arg[part]).expand(-1, c, -1))
                start += counts[r]
        if tables:
            outs.append(_lut(sub[first:start], torch.cat(tables)))
        for r in range(n_geometric + n_table, len(ops)):   # Color and Sharpness mix a pixel with others
            if counts[r]:
                part = slice(start, start + counts[r])
                outs.append(apply_op(ops[order[r]], sub[part], arg[part], fill))
                start += counts[r]
        x[idx] = torch.cat(outs)
    return x


def erase(x: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator, global_boxes: torch.Tensor = None,
          rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Random erasing of normalised images x [B, C, H, W], in place: the `boxes` [B, 4] (top, left, h, w; h = 0:
    untouched) filled with N(0, 1) noise from `generator` (on x's device). The noise is drawn in one call,
    only for the erased pixels of the global batch `global_boxes` [n, 4] (None: x's own boxes), in (image,
    channel, row, column) order; x, rows rank::world_size of that batch, takes its images' stretches of it.
    So a global batch's noise is the same for every world size and ranks take disjoint parts of it."""
    if global_boxes is None:
        global_boxes, rank, world_size = boxes, 0, 1
    global_boxes, boxes = global_boxes.cpu(), boxes.cpu()
    _, c, h, w = x.shape
    counts = c * global_boxes[:, 2] * global_boxes[:, 3]
    total = int(counts.sum())
    if total == 0:
        return x
    noise = torch.empty(total, dtype=x.dtype, device=x.device).normal_(generator=generator)
    # this rank's erased images, the first noise element of each, and every element's flat index in x
    rows = (boxes[:, 2] > 0).nonzero()[:, 0]
    if len(rows) == 0:
        return x
    top, left, bh, bw = boxes[rows].unbind(1)
    size = c * bh * bw
    source = (counts.cumsum(0) - counts)[rank + rows * world_size]
    image = torch.repeat_interleave(torch.arange(len(rows)), size)
    j = torch.arange(int(size.sum())) - torch.repeat_interleave(size.cumsum(0) - size, size)   # (c, y, x) raster
    area, width = (bh * bw)[image], bw[image]
    within = j % area
    flat = (((rows[image] * c + j // area) * h + top[image] + within // width) * w + left[image] + within % width)
    x.view(-1)[flat.to(x.device)] = noise[(source[image] + j).to(x.device)]
    return x


def mix(x, y, row, num_classes, smoothing):
    """Mixup or CutMix of a normalised batch with its reverse, as `draw_mix`'s `row` says; returns (x, soft
    targets [B, K] float32)."""
    lam, use_cutmix, yl, yh, xl, xh = row.tolist()
    off = smoothing / num_classes
    target = torch.full((len(y), num_classes), off, dtype=torch.float32, device=x.device)
    target.scatter_(1, y.long().view(-1, 1), 1.0 - smoothing + off)
    if lam == 1.0:
        return x, target
    if use_cutmix:
        yl, yh, xl, xh = int(yl), int(yh), int(xl), int(xh)
        x = x.clone()
        x[:, :, yl:yh, xl:xh] = x[:, :, yl:yh, xl:xh].flip(0)   # only the box is reversed (flip copies)
    else:   # x·λ + reversed·(1 − λ), the same products and sum, with one temporary less
        x = (x * lam).add_(x.flip(0).mul_(1.0 - lam))
    return x, target * lam + target.flip(0) * (1.0 - lam)


@dataclass(frozen=True)
class Augmentation:
    """The strong augmentation of a training run (each part off when 0/None), read from its recipe."""
    randaugment: RandAugmentSpec = None
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0
    num_classes: int = 0

    @classmethod
    def from_recipe(cls, recipe, num_classes):
        """The recipe's augmentation, or None when the recipe asks for none of it."""
        ra = parse_randaugment(recipe.randaugment) if recipe.randaugment else None
        aug = cls(ra, recipe.random_erasing, recipe.mixup, recipe.cutmix, recipe.mixup_prob,
                  recipe.mixup_switch_prob, recipe.label_smoothing, int(num_classes))
        return aug if aug.enabled else None

    @property
    def mixing(self):
        return (self.mixup > 0 or self.cutmix > 0) and self.mix_prob > 0

    @property
    def enabled(self):
        return self.randaugment is not None or self.random_erasing > 0 or self.mixing

    def plan(self, seed, epoch, n, num_batches, height, width):
        """Every draw of an epoch: per position (RandAugment, erasing boxes) and per global batch (mixing),
        plus the seed of the erasing noise (`noise_seed + g` for global batch g)."""
        gen = torch.Generator().manual_seed(_generator("image", seed, epoch))
        ra = draw_randaugment(self.randaugment, n, gen) if self.randaugment else None
        if ra is not None:   # each draw's argument, once per epoch rather than per batch
            ra["arg"] = level_args(self.randaugment.ops, ra["op"], ra["magnitude"], ra["sign"], height, width)
        boxes = draw_erasing(self.random_erasing, n, height, width, gen) if self.random_erasing > 0 else None
        mixes = draw_mix(num_batches, height, width, self.mixup, self.cutmix, self.mix_prob, self.switch_prob,
                         np.random.default_rng(_generator("mix", seed, epoch))) if self.mixing else None
        return {"randaugment": ra, "erase": boxes, "mix": mixes, "noise_seed": _generator("noise", seed, epoch)}
