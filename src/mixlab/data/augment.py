"""Strong augmentation, batched on the training device: RandAugment, random erasing, Mixup / CutMix.

Every image of a batch draws its own ops and magnitudes; per RandAugment layer the images are sorted into
op groups (GROUPS) and the work is a few batched tensor ops per group (one affine `grid_sample` for all
geometric ops, one gather through per-image lookup tables for the point, histogram and Contrast ops, one
blend for Color and Sharpness), with no per-image Python; what depends only on the draws (groups, warp
coefficients, point-op tables) is computed once per epoch (`randaugment_plan`). On a CPU the cost is the
count of small kernels, so the code avoids the slow ones (advanced indexing, float → uint8, `trunc`). The semantics are timm's (`timm.data.auto_augment`,
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
    return _to_uint8((image.to(torch.float32) - d).mul_(f).add_(d).clamp_(0, 255))


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 of float values in [0, 255], truncated (what `trunc` then `.to(uint8)` give: clamping to [0, 255]
    before or after truncating is the same). Through int16, because on a CPU torch's float → uint8
    conversion and `trunc` are an order of magnitude slower than float → int16 → uint8."""
    return x.to(torch.int16).to(torch.uint8)


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
    run's mean colour) whole, as PIL does; inside, bilinear with edges clamped (`warp`, which the batched
    RandAugment calls with the epoch plan's coefficients)."""
    b, c, h, w = x.shape
    coefficients = grid_coefficients(matrices.to(x.device, torch.float64), h, w)
    return warp(x, coefficients, torch.as_tensor(fill, dtype=torch.float32, device=x.device).view(1, -1, 1, 1))


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


# --- the batched RandAugment: per-epoch precomputation and one pass per layer ----------------------------------
# Every op of a layer belongs to one of these groups; a group is one batched computation, so a layer's work is a
# fixed, small number of kernels whatever its mix of ops (the cost on a CPU is the count of small kernels).
GROUPS = ("geometric", "point", "AutoContrast", "Equalize", "Contrast", "Color", "Sharpness")
NO_OP = len(GROUPS)   # the group of an image that takes no op in a layer


@functools.lru_cache(maxsize=None)
def _op_groups(ops: tuple) -> torch.Tensor:
    """The group (index into GROUPS) of each op of `ops`."""
    def group(name):
        base = name[:-len("Increasing")] if name.endswith("Increasing") else name
        if name in AFFINE_OPS:
            return 0
        if name in POINT_OPS:
            return 1
        return GROUPS.index(base)
    return torch.tensor([group(name) for name in ops], dtype=torch.long)


def grid_coefficients(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[..., 6] float64 (ax, bx, cx, ay, by, cy) of PIL affine coefficients [..., 2, 3] = [A | t]: grid_sample's
    normalised source coordinate of output pixel (i, j) is gx = ax·(j + ½) + bx·(i + ½) + cx (align_corners=False:
    g = 2·u_in/size − 1 of u_in = A·u + t), likewise gy; the scaling done once per matrix, not per pixel."""
    m = matrices.to(torch.float64).reshape(*matrices.shape[:-2], 6)
    scale = torch.tensor([2.0 / width] * 3 + [2.0 / height] * 3, dtype=torch.float64, device=m.device)
    shift = torch.tensor([0.0, 0.0, -1.0, 0.0, 0.0, -1.0], dtype=torch.float64, device=m.device)
    return m * scale + shift


@functools.lru_cache(maxsize=16)
def _pixel_centres(height: int, width: int, device: torch.device) -> tuple:
    """Float64 pixel centres j + ½ as [1, 1, W] and i + ½ as [1, H, 1] (cached: constants)."""
    cols = torch.arange(width, dtype=torch.float64, device=device) + 0.5
    rows = torch.arange(height, dtype=torch.float64, device=device) + 0.5
    return cols.view(1, 1, width), rows.view(1, height, 1)


@functools.lru_cache(maxsize=16)
def _gray_weights(device: torch.device) -> torch.Tensor:
    """PIL's L weights of R, G, B in 16-bit fixed point, float32 [1, 1, 3] (cached)."""
    return torch.tensor([19595.0, 38470.0, 7471.0], dtype=torch.float32, device=device).view(1, 1, 3)


@functools.lru_cache(maxsize=16)
def _fill_tensor(fill: tuple, device: torch.device) -> torch.Tensor:
    """The geometric ops' fill colour as float32 [1, C, 1, 1] (cached: the same every batch)."""
    return torch.tensor(fill, dtype=torch.float32, device=device).view(1, -1, 1, 1)


@functools.lru_cache(maxsize=16)
def _levels(device: torch.device) -> torch.Tensor:
    """The 256 grey levels as a uint8 image [1, 1, 1, 256] (cached), what the tables are computed on."""
    return torch.arange(256, dtype=torch.uint8, device=device).view(1, 1, 1, 256)


def warp(x: torch.Tensor, coefficients: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """PIL's AFFINE transform with bilinear resampling of uint8 images x [B, C, H, W], each by its own
    `grid_coefficients` [B, 6]: out(u) = x(A·u + t) in pixel-centre coordinates. Points that map outside the
    image take `fill` (float32 [1, C, 1, 1], the run's mean colour) whole, as PIL does; inside, bilinear with
    edges clamped (grid_sample, border mode); rounded half up as PIL. The grid's coordinates are float64 (PIL
    computes them in double), each a column term plus a row term broadcast over the image."""
    b, c, h, w = x.shape
    cols, rows = _pixel_centres(h, w, x.device)
    k = coefficients.to(torch.float64)[:, :, None, None]
    gx = k[:, 0] * cols + (k[:, 1] * rows + k[:, 2])
    gy = k[:, 3] * cols + (k[:, 4] * rows + k[:, 5])
    inside = ((gx >= -1) & (gx < 1) & (gy >= -1) & (gy < 1))[:, None]   # 0 ≤ u_in < size on both axes
    # written into the interleaved float32 grid (the same rounding as .to(float32)): cheaper on a CPU than
    # stacking the float64 planes and converting; the inside comparisons above run on the contiguous planes
    grid = torch.empty(b, h, w, 2, dtype=torch.float32, device=x.device)
    grid[..., 0] = gx
    grid[..., 1] = gy
    sampled = F.grid_sample(x.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False)
    # + ½ then truncation is PIL's rounding half up (the samples are convex combinations of 0..255)
    return _to_uint8(torch.where(inside, sampled, fill).add_(0.5).clamp_(0, 255))


def _gray_float(x: torch.Tensor) -> torch.Tensor:
    """`_gray` of float32 images holding integers [B, C, H, W] → float32 [B, 1, H, W]: the weighted sum and
    the rounding constant are integers below 2²⁴ (255·65536 + 32768), exact in float32 in any order of
    summation, and the shift by 16 is an exact multiplication by 2⁻¹⁶ then floor; so it is PIL's L exactly,
    as one batched matrix product over the channels."""
    b, c, h, w = x.shape
    if c == 1:
        return x
    total = torch.matmul(_gray_weights(x.device), x.reshape(b, c, h * w))
    return total.add_(32768.0).mul_(1.0 / 65536).floor_().view(b, 1, h, w)


def _smooth_float(x: torch.Tensor) -> torch.Tensor:
    """`_smooth` of float32 images holding integers [B, C, H, W], in float32: the weighted 3×3 sum Σ by shifted
    adds (integers, exact), then (2Σ + 13) / 26 floored (the quotient is never within 1/26 of an integer it
    does not reach, so the float division floors as the integer one); border pixels kept."""
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
    total = (rows[..., :-2] + rows[..., 1:-1]).add_(rows[..., 2:]).add_(x[:, :, 1:-1, 1:-1], alpha=4.0)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = total.mul_(2.0).add_(13.0).div_(26.0).floor_()
    return out


def randaugment_plan(spec: RandAugmentSpec, draws: dict, height: int, width: int) -> dict:
    """`draws` (`draw_randaugment` rows) plus what the batches of an epoch need of them, computed once for all
    n images: "arg" (`level_args`), "group" [n, L] (index into GROUPS; NO_OP where no op is applied), "coef"
    [n, L, 6] (`grid_coefficients` of the geometric ops' matrices; identity elsewhere) and "table" [n, L, 256]
    uint8 (the point ops' lookup tables, `point_table`; zeros elsewhere: 512 bytes per image with 2 layers).
    Every entry is indexed by position first, so a batch takes its rows by slicing."""
    ops = spec.ops
    out = dict(draws)
    if "arg" not in out:
        out["arg"] = level_args(ops, draws["op"], draws["magnitude"], draws["sign"], height, width)
    op, arg = draws["op"], out["arg"]
    out["group"] = torch.where(draws["apply"], _op_groups(ops)[op], NO_OP)
    kind = torch.tensor([AFFINE_OPS.index(name) if name in AFFINE_OPS else -1 for name in ops])[op]
    out["coef"] = grid_coefficients(affine_matrices(kind.flatten(), arg.flatten(), height, width),
                                    height, width).view(*op.shape, 6)
    table = torch.zeros(*op.shape, 256, dtype=torch.uint8)
    for k, name in enumerate(ops):
        if name in POINT_OPS:
            rows = (draws["apply"] & (op == k)).nonzero(as_tuple=True)
            if len(rows[0]):
                table[rows] = point_table(name, arg[rows])
    out["table"] = table
    return out


def randaugment(x: torch.Tensor, draws: dict, spec: RandAugmentSpec, fill) -> torch.Tensor:
    """RandAugment of uint8 images x [B, C, H, W] with per-image `draws` (`draw_randaugment` rows of these
    images, or their `randaugment_plan`, which an epoch's plan holds). Per layer every image takes its own op;
    the images sorted by group (GROUPS) form contiguous runs, so a layer is one gather of the images with an
    op, one affine warp of the geometric ops (grid coefficients from the plan), one gather through per-image
    tables of the table ops (the point ops' tables from the plan, AutoContrast and Equalize from one
    histogram, Contrast from the mean grey level), one blend of Color and Sharpness, and one write-back."""
    b, c, h, w = x.shape
    if "group" not in draws:
        draws = randaugment_plan(spec, draws, h, w)
    dev = x.device
    fill_t = _fill_tensor(tuple(float(v) for v in fill), dev)
    for layer in range(spec.num_layers):
        group = draws["group"][:, layer]
        counts = torch.bincount(group, minlength=NO_OP + 1).tolist()
        chosen = b - counts[NO_OP]
        if chosen == 0:
            continue
        perm = torch.argsort(group, stable=True)
        idx = perm[:chosen]
        ends = np.cumsum(counts[:NO_OP]).tolist()   # run k of the sorted images: [ends[k - 1], ends[k])
        geo, point, ac, eq, con, col, sharp = (slice(0 if k == 0 else ends[k - 1], ends[k]) for k in range(NO_OP))
        # the batch in group order by one index_select (on a CPU far cheaper than advanced indexing or
        # index_put), and back at the end by the inverse permutation
        perm_dev = perm.to(dev)
        ordered = x.index_select(0, perm_dev)
        sub = ordered[:chosen]
        outs = []
        if counts[0]:
            outs.append(warp(sub[geo], draws["coef"][idx[geo], layer].to(dev), fill_t))
        # Contrast, Color and Sharpness work on float images (Contrast and Color on their grey levels)
        xf = sub[con.start:].to(torch.float32) if con.start < chosen else None
        n_con, n_col = counts[4], counts[5]
        gray = _gray_float(xf[:n_con + n_col]) if n_con + n_col else None
        tables = []
        if counts[1]:
            tables.append(draws["table"][idx[point], layer].to(dev)[:, None].expand(-1, c, -1))
        if counts[2] + counts[3]:
            hist = _histogram(sub[ac.start:eq.stop])
            if counts[2]:
                tables.append(auto_contrast_table(hist[:counts[2]]))
            if counts[3]:
                tables.append(equalize_table(hist[counts[2]:]))
        if n_con:
            mean = gray[:n_con].to(torch.float64).mean((1, 2, 3), keepdim=True)
            factor = draws["arg"][idx[con], layer].to(dev)
            tables.append(_blend(torch.floor(mean + 0.5), _levels(dev), factor).view(n_con, 1, 256).expand(-1, c, -1))
        if tables:
            outs.append(_lut(sub[point.start:con.stop], torch.cat(tables)))
        if n_col + counts[6]:   # Color (blend with the grey image) and Sharpness (with the smoothed one) in one
            degenerate = []
            if n_col:
                degenerate.append(gray[n_con:].expand(-1, c, -1, -1))
            if counts[6]:
                degenerate.append(_smooth_float(xf[n_con + n_col:]))
            factor = draws["arg"][idx[col.start:sharp.stop], layer].to(dev)
            outs.append(_blend(torch.cat(degenerate), xf[n_con:], factor))
        outs.append(ordered[chosen:])
        x = torch.cat(outs).index_select(0, torch.empty_like(perm_dev).scatter_(0, perm_dev, torch.arange(b, device=dev)))
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
    # each erased image's box is one slice copy of its stretch of the noise: on a CPU, a copy per erased image
    # (a quarter of the batch) is cheaper than any whole-batch formulation (a masked_scatter_ or a flat index
    # over the batch, which pay a pass over all B·C·H·W elements)
    starts = (counts.cumsum(0) - counts).tolist()
    for i, (top, left, bh, bw) in enumerate(boxes.tolist()):
        if bh > 0:
            start = starts[rank + i * world_size]
            x[i, :, top:top + bh, left:left + bw] = noise[start:start + c * bh * bw].view(c, bh, bw)
    return x


def mix(x, y, row, num_classes, smoothing, inplace=False):
    """Mixup or CutMix of a normalised batch with its reverse, as `draw_mix`'s `row` says; returns (x, soft
    targets [B, K] float32). inplace: x may be overwritten (the loader's own fresh batch), saving a copy of
    the batch."""
    lam, use_cutmix, yl, yh, xl, xh = row.tolist()
    off = smoothing / num_classes
    target = torch.full((len(y), num_classes), off, dtype=torch.float32, device=x.device)
    target.scatter_(1, y.long().view(-1, 1), 1.0 - smoothing + off)
    if lam == 1.0:
        return x, target
    if use_cutmix:
        yl, yh, xl, xh = int(yl), int(yh), int(xl), int(xh)
        if not inplace:
            x = x.clone()
        x[:, :, yl:yh, xl:xh] = x[:, :, yl:yh, xl:xh].flip(0)   # only the box is reversed (flip copies)
    else:   # x·λ + reversed·(1 − λ), the same products and sum, with one temporary less (two in place)
        reversed_part = x.flip(0).mul_(1.0 - lam)
        x = (x.mul_(lam) if inplace else x * lam).add_(reversed_part)
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
        if ra is not None:   # arguments, groups, warp coefficients and point tables once per epoch, not per batch
            ra = randaugment_plan(self.randaugment, ra, height, width)
        boxes = draw_erasing(self.random_erasing, n, height, width, gen) if self.random_erasing > 0 else None
        mixes = draw_mix(num_batches, height, width, self.mixup, self.cutmix, self.mix_prob, self.switch_prob,
                         np.random.default_rng(_generator("mix", seed, epoch))) if self.mixing else None
        return {"randaugment": ra, "erase": boxes, "mix": mixes, "noise_seed": _generator("noise", seed, epoch)}
