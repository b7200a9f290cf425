"""Strong augmentation (mixlab.data.augment): every batched op against timm's PIL op, the draws' distribution
against timm's own RandAugment / RandomErasing / Mixup, per-image draws, resume and DDP streams, clean eval."""
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from mixlab.data import augment as A
from mixlab.data import DeviceLoader, load_dataset

auto_augment = pytest.importorskip("timm.data.auto_augment")
SPEC = A.parse_randaugment("rand-m9-mstd0.5-inc1")


def _images(n=6, c=3, size=20, seed=0):
    """Smooth images with structure (gradients + blobs), so the geometric and histogram ops have work to do."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = (yy * 7 + xx * 3).float()[None, None]
    noise = torch.rand(n, c, size, size, generator=g) * 90
    scale = torch.rand(n, c, 1, 1, generator=g) * 1.5 + 0.2
    return (base * scale + noise).clamp(0, 255).to(torch.uint8)


def _pil(x):
    arr = x.numpy()
    return Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))


def _tensor(img):
    arr = np.array(img)
    return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())


@pytest.mark.parametrize("channels", [3, 1])
def test_every_op_matches_timms_pil_op(channels):
    """Each of the 15 ops, at several arguments, per image: equal to timm's op on the PIL image (the point
    and histogram ops exactly; resampling ops within one grey level on ≥ 97 % of pixels)."""
    x = _images(c=channels)
    fill = [128] * channels
    fill_pil = 128 if channels == 1 else (128,) * 3
    for name in SPEC.ops:
        for magnitude, sign in ((3.0, 1.0), (9.0, -1.0), (10.0, 1.0)):
            arg = A.level_arg(name, torch.full((len(x),), magnitude, dtype=torch.float64),
                              torch.full((len(x),), sign, dtype=torch.float64), x.shape[-1])
            timm_arg = auto_augment.LEVEL_TO_ARG[name]
            hp = {"translate_pct": 0.45}
            if timm_arg is not None:   # timm's argument for this magnitude and sign (its random negation forced)
                random.seed(0)
                state = random.random
                random.random = (lambda: 0.0) if sign > 0 else (lambda: 1.0)
                try:
                    ref_arg = timm_arg(magnitude, hp)
                finally:
                    random.random = state
                expected = ref_arg[0] * (x.shape[-1] if name.startswith("Translate") else 1)
                assert float(arg[0]) == pytest.approx(expected, abs=1e-9), name
            if name in A.AFFINE_OPS:
                out = A.affine(x, A.affine_matrices([name] * len(x), arg, *x.shape[-2:]), fill)
            else:
                out = A.apply_op(name, x, arg, fill)
            fn = auto_augment.NAME_TO_OP[name]
            for i in range(len(x)):
                args = () if timm_arg is None else (float(arg[i]) / (x.shape[-1] if name.startswith("Translate")
                                                                      else 1),)
                if name.startswith(("Posterize", "Solarize")):
                    args = (int(args[0]),)
                if name.startswith("Posterize") and args[0] == 0:   # Pillow ≥ 10 refuses 0 bits; older ones gave black
                    ref = torch.zeros_like(x[i])
                else:
                    ref = _tensor(fn(_pil(x[i]), *args, fillcolor=fill_pil, resample=Image.BILINEAR))
                diff = (out[i].int() - ref.int()).abs()
                if name in A.AFFINE_OPS + ("SharpnessIncreasing",):
                    assert (diff <= 1).float().mean() >= 0.97 and diff.float().mean() < 0.6, (name, magnitude, diff.max())
                else:
                    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99, (name, magnitude, diff.max())


def test_randaugment_strings_parse_as_timm_reads_them():
    assert (SPEC.magnitude, SPEC.num_layers, SPEC.prob, SPEC.magnitude_std, SPEC.increasing) == (9, 2, 0.5, 0.5, True)
    s = A.parse_randaugment("rand-m7-n3-mstd101-p0.8")
    assert (s.magnitude, s.num_layers, s.magnitude_std, s.prob, s.increasing) == (7, 3, math.inf, 0.8, False)
    assert s.ops == tuple(auto_augment._RAND_TRANSFORMS) and SPEC.ops == tuple(auto_augment._RAND_INCREASING_TRANSFORMS)
    for bad in ("rand-x9", "augmix-m9", "rand-m9-n0"):
        with pytest.raises(ValueError):
            A.parse_randaugment(bad)


def test_op_and_magnitude_distribution_matches_timms_randaugment():
    """20,000 draws of the device path against 20,000 images through timm's RandAugment (its ops' calls
    recorded): the frequency of each applied op and the mean/quantiles of each op's argument agree."""
    n = 20000
    draws = A.draw_randaugment(SPEC, n, torch.Generator().manual_seed(1))
    ours = {name: [] for name in SPEC.ops}
    for layer in range(SPEC.num_layers):
        for k, name in enumerate(SPEC.ops):
            sel = draws["apply"][:, layer] & (draws["op"][:, layer] == k)
            ours[name] += A.level_arg(name, draws["magnitude"][sel, layer], draws["sign"][sel, layer]).tolist()
    ra = auto_augment.rand_augment_transform("rand-m9-mstd0.5-inc1", {"translate_pct": 0.45})
    theirs = {name: [] for name in SPEC.ops}
    for op in ra.ops:
        op.aug_fn = (lambda name: lambda img, *args, **kw: theirs[name].append(args[0] if args else 0.0) or img)(op.name)
    random.seed(1)
    np.random.seed(1)
    img = Image.new("RGB", (4, 4))
    for _ in range(n):
        ra(img)
    total = 2 * n
    for name in SPEC.ops:
        p_ours, p_theirs = len(ours[name]) / total, len(theirs[name]) / total
        # binomial standard error of a frequency near 1/30 over 40,000 draws is 0.0009: 5 of them
        assert abs(p_ours - p_theirs) < 0.0045, (name, p_ours, p_theirs)
        a, b = np.array(ours[name], dtype=float), np.array(theirs[name], dtype=float)
        # signed ops are bimodal (±): their sign rate, then the distribution of the size
        assert abs((a < 0).mean() - (b < 0).mean()) < 0.06, name
        centre = 1.0 if name.endswith("Increasing") and not name.startswith(("Posterize", "Solarize")) else 0.0
        a, b = np.abs(a - centre), np.abs(b - centre)
        spread = max(b.std(), 1e-3)
        assert abs(a.mean() - b.mean()) < 0.12 * spread, name
        for q in (0.1, 0.5, 0.9):
            assert abs(np.quantile(a, q) - np.quantile(b, q)) <= 0.25 * spread, (name, q)
