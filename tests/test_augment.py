"""Strong augmentation (mixlab.data.augment): every batched op against timm's PIL op, the draws' distribution
against timm's own RandAugment / RandomErasing / Mixup, per-image draws, resume and DDP streams, clean eval."""
import csv
import io
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
    """10,000 draws of the device path against 10,000 images through timm's RandAugment (its ops' calls
    recorded): the frequency of each applied op and the mean/quantiles of each op's argument agree."""
    n = 10000
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
        # binomial standard error of a frequency near 1/30 over 20,000 draws is 0.0013; 0.0045 is 3.5 of them
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


def test_erasing_boxes_follow_timms_random_erasing():
    """Device boxes against timm's RandomErasing on 8,000 blank 16×24 images (its noise marks the box)."""
    from timm.data.random_erasing import RandomErasing
    n, h, w = 8000, 16, 24
    ours = A.draw_erasing(0.25, n, h, w, torch.Generator().manual_seed(2))
    erase = RandomErasing(0.25, mode="pixel", device="cpu")
    random.seed(2)
    torch.manual_seed(2)
    theirs = []
    for _ in range(n):
        img = torch.zeros(1, h, w)
        erase(img)
        hit = (img[0] != 0).nonzero()
        theirs.append((0, 0, 0, 0) if len(hit) == 0 else
                      (int(hit[:, 0].min()), int(hit[:, 1].min()), int(hit[:, 0].max() - hit[:, 0].min() + 1),
                       int(hit[:, 1].max() - hit[:, 1].min() + 1)))
    theirs = torch.tensor(theirs, dtype=torch.float64)
    ours = ours.double()
    assert abs((ours[:, 2] > 0).double().mean() - (theirs[:, 2] > 0).double().mean()) < 0.025
    a, b = ours[ours[:, 2] > 0], theirs[theirs[:, 2] > 0]
    for col in range(4):   # top, left, height, width
        assert abs(a[:, col].mean() - b[:, col].mean()) < 0.1 * b[:, col].std(), col
    assert ((a[:, 0] + a[:, 2] <= h) & (a[:, 1] + a[:, 3] <= w)).all()


def test_mix_draws_follow_timms_mixup():
    """λ, the Mixup/CutMix switch and the CutMix boxes against timm's Mixup (batch mode) over 6,000 batches;
    and `mix` against timm's mixing of one batch for the same λ / box."""
    from timm.data.mixup import Mixup, cutmix_bbox_and_lam, mixup_target
    n, h, w = 6000, 16, 16
    ours = A.draw_mix(n, h, w, 0.8, 1.0, 1.0, 0.5, np.random.default_rng(3))
    m = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=5)
    np.random.seed(3)
    theirs = []
    for _ in range(n):
        lam, cut = m._params_per_batch()
        if cut:
            (yl, yh, xl, xh), lam = cutmix_bbox_and_lam((1, 1, h, w), lam)
            theirs.append((lam, 1.0, yl, yh, xl, xh))
        else:
            theirs.append((lam, 0.0, 0, 0, 0, 0))
    theirs = np.array(theirs, dtype=float)
    assert abs(ours[:, 1].mean() - theirs[:, 1].mean()) < 0.03
    for cut in (0.0, 1.0):
        a, b = ours[ours[:, 1] == cut], theirs[theirs[:, 1] == cut]
        for col in ((0,) if cut == 0 else (0, 2, 3, 4, 5)):
            assert abs(a[:, col].mean() - b[:, col].mean()) < 0.06 * b[:, col].std() + 1e-9, (cut, col)
            assert abs(np.quantile(a[:, col], 0.25) - np.quantile(b[:, col], 0.25)) < 0.2 * b[:, col].std() + 1e-9   # λ is discrete for CutMix
    x = torch.randn(6, 3, h, w)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    for row in (ours[ours[:, 1] == 1][0], ours[ours[:, 1] == 0][0]):
        got_x, got_y = A.mix(x, y, torch.tensor(row), 5, 0.1)
        want = x.clone()
        if row[1]:
            yl, yh, xl, xh = (int(v) for v in row[2:])
            want[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        else:
            want = want * row[0] + x.flip(0) * (1 - row[0])
        assert torch.allclose(got_x, want, atol=1e-6)
        assert torch.allclose(got_y, mixup_target(y, 5, float(row[0]), 0.1), atol=1e-6)


def _strong_aug(**kw):
    from mixlab.train.recipes import load_recipe
    return A.Augmentation.from_recipe(load_recipe("strong").replace(**kw), 4)


def test_each_image_draws_its_own_ops_and_ranks_draw_disjoint_streams():
    """One image repeated 64 times comes out as (almost) 64 different images; W ranks see exactly the rows
    r::W of one process's augmented batch (RandAugment + erasing are per position); Mixup targets are soft."""
    one = _images(1, size=16)[0]
    from mixlab.data.dataset import ImageDataset
    ds = ImageDataset(one.expand(64, -1, -1, -1).clone(), torch.arange(64) % 4, [str(k) for k in range(4)],
                      (0.5,) * 3, (0.25,) * 3, name="same")
    aug = _strong_aug(mixup=0.0, cutmix=0.0)
    x, _ = next(iter(DeviceLoader(ds, 64, seed=5, crop_padding=0, flip=False, normalize=False, augment=aug)))
    distinct = {tuple((x[i] * 255).round().flatten().tolist()) for i in range(64)}
    assert len(distinct) > 40
    single = [b[0] for b in DeviceLoader(ds, 16, seed=5, augment=aug)]
    for r in range(2):
        ranked = [b[0] for b in DeviceLoader(ds, 8, seed=5, rank=r, world_size=2, augment=aug)]
        assert all(torch.equal(a[r::2], b) for a, b in zip(single, ranked))
    mixed = DeviceLoader(ds, 16, seed=5, augment=_strong_aug())
    _, y = next(iter(mixed))
    assert y.shape == (16, 4) and torch.allclose(y.sum(1), torch.ones(16))
    assert DeviceLoader(ds, 16, train=False, augment=aug).augment is None   # evaluation never augments


def _folder(root, n=12, size=12):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(40 + 150 * k + rng.integers(0, 60, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


def test_streaming_path_runs_timms_transforms_deterministically(tmp_path):
    """timm's RandAugment in the workers, RandomErasing and Mixup in the main process: the same batches with
    0 or 2 workers and on every call, new draws each epoch, soft targets, and images changed by them."""
    from mixlab.data import ImageTransform, StreamingLoader
    files = load_dataset(str(_folder(tmp_path)), transform=ImageTransform(12), stream=True, verbose=False)
    aug = A.Augmentation.from_recipe(__import__("mixlab.train.recipes", fromlist=["x"]).load_recipe("strong"), 2)

    def epoch(loader, e):
        loader.set_epoch(e)
        return list(loader)
    plain = epoch(StreamingLoader(files, 8, seed=3, crop_padding=0, flip=False), 0)
    runs = [epoch(StreamingLoader(files, 8, seed=3, crop_padding=0, flip=False, workers=w, augment=aug), 0)
            for w in (0, 2, 0)]
    for other in runs[1:]:
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(runs[0], other))
    assert runs[0][0][1].shape == (8, 2) and not torch.equal(runs[0][0][0], plain[0][0])
    later = epoch(StreamingLoader(files, 8, seed=3, crop_padding=0, flip=False, augment=aug), 1)
    assert not torch.equal(runs[0][0][0], later[0][0])


def test_strong_run_resumes_bit_exactly_and_evaluates_clean_images(tmp_path, monkeypatch):
    """RandAugment + erasing + Mixup/CutMix + EMA on: 2 epochs at once = a run stopped after its first epoch and
    resumed, bit for bit; the recorded test top-1 is the saved weights' on clean test images (`mixlab eval`)."""
    from safetensors.torch import load_file
    from mixlab.train import TrainConfig, engine, train
    from mixlab.train import evaluate_run
    kw = dict(model="mixer_paper", data="synthetic:192x3x16x16:4", recipe="strong", batch_size=32, device="cpu",
              epochs=2, model_kwargs={"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64},
              overrides={"ema_decay": 0.9})
    a = train(TrainConfig(out=str(tmp_path / "a"), **kw), log=None)
    commit = engine.commit_epoch

    def stop_after_first(run, row):
        commit(run, row)
        raise KeyboardInterrupt
    monkeypatch.setattr(engine, "commit_epoch", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "b"), **kw), log=None)
    monkeypatch.setattr(engine, "commit_epoch", commit)
    b = train(TrainConfig(resume=str(tmp_path / "b"), device="cpu"), log=None)
    rows = [[{k: v for k, v in r.items() if "seconds" not in k}
             for r in csv.DictReader(io.StringIO((tmp_path / d / "metrics.csv").read_text()))] for d in ("a", "b")]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    wa, wb = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["ema"] and a["live_test_top1"] is not None and a["test_top1"] == b["test_top1"]
    again = evaluate_run(str(tmp_path / "a"), weights="last")
    assert again["top1"] == pytest.approx(a["test_top1"], abs=1e-9)


def test_other_recipes_augment_nothing_more():
    """The strong keys are off in every other recipe, so their loaders and models are as before (paper's
    random stream included); `--set mixup=0.8` turns one on anywhere."""
    from mixlab.train.recipes import list_recipes, load_recipe
    for name in list_recipes():
        if name != "strong":
            r = load_recipe(name)
            assert A.Augmentation.from_recipe(r, 10) is None and r.drop_path_rate is None, name
    on = A.Augmentation.from_recipe(load_recipe("paper").replace(mixup="0.8"), 10)
    assert on.mixup == 0.8 and on.randaugment is None
    with pytest.raises(ValueError, match="randaugment"):
        load_recipe("paper").replace(randaugment="rand-q3")


# --- the batched (vectorised) path against a straightforward per-image computation ------------------------------
def _matrix_per_image(name, v, h, w):
    """PIL's affine coefficients of one geometric op, in Python floats (the pre-vectorisation loop)."""
    m = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    if name == "ShearX":
        m[0][1] = v
    elif name == "ShearY":
        m[1][0] = v
    elif name == "TranslateXRel":
        m[0][2] = v
    elif name == "TranslateYRel":
        m[1][2] = v
    else:
        cos, sin = round(math.cos(math.radians(v)), 15), round(math.sin(math.radians(v)), 15)
        cx, cy = w / 2.0, h / 2.0
        m = [[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy]]
    return torch.tensor(m, dtype=torch.float64)


def test_affine_matrices_are_the_per_image_matrices():
    """All geometric ops' matrices at once (tensor ops) = one Python matrix per image, in float64 (torch's
    15-decimal rounding of cos/sin is within 1e-15 of Python's)."""
    g = torch.Generator().manual_seed(4)
    kinds = torch.randint(0, len(A.AFFINE_OPS), (500,), generator=g)
    args = (torch.rand(500, generator=g, dtype=torch.float64) - 0.5) * 60
    got = A.affine_matrices(kinds, args, 20, 24)
    want = torch.stack([_matrix_per_image(A.AFFINE_OPS[k], v, 20, 24) for k, v in zip(kinds.tolist(), args.tolist())])
    assert torch.allclose(got, want, rtol=0, atol=1e-13)
    assert torch.equal(A.affine_matrices([A.AFFINE_OPS[k] for k in kinds.tolist()], args, 20, 24), got)


@pytest.mark.parametrize("channels", [3, 1])
def test_table_ops_are_exactly_their_per_image_ops(channels):
    """Each table op (point ops tabulated from the argument, histogram ops from the image, Contrast from its
    mean) through one gather = the op on each image alone, exactly, each image with its own argument."""
    x = _images(12, c=channels, size=16, seed=5)
    g = torch.Generator().manual_seed(6)
    for name in A.TABLE_OPS:
        magnitude = torch.rand(len(x), generator=g, dtype=torch.float64) * 10
        sign = torch.where(torch.rand(len(x), generator=g) < 0.5, 1.0, -1.0).double()
        arg = A.level_arg(name, magnitude, sign)
        got = A._lut(x, A.op_table(name, x, arg).expand(-1, channels, -1))
        for i in range(len(x)):
            assert torch.equal(got[i:i + 1], A.apply_op(name, x[i:i + 1], arg[i:i + 1], None)), (name, i)


def test_smoothing_in_integers_is_the_rounded_float64_filter():
    x = _images(8, size=16, seed=7)
    kernel = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    kernel[0, 0, 1, 1] = 5.0
    ref = torch.floor(torch.nn.functional.conv2d(x.double().reshape(-1, 1, 16, 16), kernel) / 13.0 + 0.5)
    assert torch.equal(A._smooth(x)[:, :, 1:-1, 1:-1], ref.to(torch.uint8).view(8, 3, 14, 14))
    assert torch.equal(A._smooth(x)[:, :, 0], x[:, :, 0])


@pytest.mark.parametrize("channels", [3, 1])
def test_float_grey_and_smoothing_are_the_integer_ones(channels):
    """The batched path's float32 grey level (one matrix product) and smoothing (shifted adds, floored
    division) = PIL's integer L and the integer SMOOTH filter, exactly, on every level 0..255."""
    x = _images(16, c=channels, size=16, seed=13)
    x[0] = 255   # the largest sums
    x[1] = 0
    assert torch.equal(A._gray_float(x.float()), A._gray(x).float())
    assert torch.equal(A._smooth_float(x.float()), A._smooth(x).float())


def test_mixing_in_place_is_the_copying_mix():
    """`mix(..., inplace=True)` (the loader's, on its own batch) = the copying `mix`, for Mixup and CutMix."""
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(14))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    for row in ((0.7, 0.0, 0, 0, 0, 0), (0.75, 1.0, 2, 6, 1, 5)):
        want = A.mix(x, y, torch.tensor(row, dtype=torch.float64), 5, 0.1)
        got = A.mix(x.clone(), y, torch.tensor(row, dtype=torch.float64), 5, 0.1, inplace=True)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("channels", [3, 1])
def test_batched_randaugment_equals_a_per_image_reference(channels):
    """The batched RandAugment (images sorted by op per layer, one warp, one table gather, one write-back) =
    each image alone through its own ops (`apply_op` / `affine` with a Python matrix), for the same draws:
    exactly for the images without a geometric op, within one level on 0.1 % of pixels at most for the
    others (the matrices' 15-decimal rounding); the input is left as it was."""
    n, size = 96, 16
    x = _images(n, c=channels, size=size, seed=8)
    before = x.clone()
    fill = [120] * channels
    for spec in (SPEC, A.parse_randaugment("rand-m7-n3-mstd101-p0.8")):
        draws = A.draw_randaugment(spec, n, torch.Generator().manual_seed(9))
        got = A.randaugment(x, draws, spec, fill)
        draws["arg"] = A.level_args(spec.ops, draws["op"], draws["magnitude"], draws["sign"], size, size)
        assert torch.equal(A.randaugment(x, draws, spec, fill), got)   # the plan's precomputed arguments
        geometric = torch.zeros(n, dtype=torch.bool)
        for i in range(n):
            img = x[i:i + 1]
            for layer in range(spec.num_layers):
                if not draws["apply"][i, layer]:
                    continue
                name = spec.ops[int(draws["op"][i, layer])]
                arg = A.level_arg(name, draws["magnitude"][i:i + 1, layer], draws["sign"][i:i + 1, layer], size)
                if name in A.AFFINE_OPS:
                    geometric[i] = True
                    img = A.affine(img, _matrix_per_image(name, float(arg[0]), size, size)[None], fill)
                else:
                    img = A.apply_op(name, img, arg, fill)
            diff = (got[i].int() - img[0].int()).abs()
            if geometric[i]:
                assert diff.max() <= 1 and (diff == 0).float().mean() >= 0.999, (i, spec.text)
            else:
                assert torch.equal(got[i], img[0]), (i, spec.text)
        assert geometric.any() and not geometric.all()
    assert torch.equal(x, before)


def test_erasing_noise_is_drawn_for_the_erased_pixels_only_and_split_by_rank():
    """One normal per erased element of the global batch, in (image, channel, row, column) order, each box
    filled with its image's stretch; W ranks (rows r::W) get exactly their rows of the 1-process result."""
    n, c, h, w = 16, 3, 12, 10
    boxes = A.draw_erasing(0.6, n, h, w, torch.Generator().manual_seed(10))
    assert (boxes[:, 2] > 0).any() and (boxes[:, 2] == 0).any()
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(11))
    got = A.erase(x.clone(), boxes, torch.Generator().manual_seed(12))
    sizes = (c * boxes[:, 2] * boxes[:, 3]).tolist()
    noise = torch.empty(sum(sizes)).normal_(generator=torch.Generator().manual_seed(12))
    want, start = x.clone(), 0
    for i, (top, left, bh, bw) in enumerate(boxes.tolist()):
        want[i, :, top:top + bh, left:left + bw] = noise[start:start + sizes[i]].view(c, bh, bw)
        start += sizes[i]
    assert torch.equal(got, want)
    for world in (2, 3):
        for r in range(world):
            part = A.erase(x[r::world].clone(), boxes[r::world], torch.Generator().manual_seed(12), boxes, r, world)
            assert torch.equal(part, want[r::world])


def _smallest_per_family():
    """The smallest registered classifier with a native 3×32² input, one per family (UNets denoise)."""
    import mixlab
    best = {}
    for name in mixlab.list_models():
        cfg = mixlab.model_cfg(name)
        if cfg["family"] == "unet" or tuple(cfg.get("input_size", ())) != (3, 32, 32):
            continue
        with torch.device("meta"):
            n = sum(p.numel() for p in mixlab.create_model(name).parameters())
        if cfg["family"] not in best or n < best[cfg["family"]][1]:
            best[cfg["family"]] = (name, n)
    return sorted(name for name, _ in best.values())


@pytest.mark.parametrize("model", _smallest_per_family())
def test_the_strong_recipe_trains_every_classifier_family(model, tmp_path):
    """Strong steps (RandAugment, erasing, Mixup/CutMix, soft targets) on each family's smallest model: the
    loss is finite, the weights move, and the recipe's stochastic depth reaches the models that have it."""
    import json
    from mixlab.train import TrainConfig, train
    from mixlab.train.data_setup import model_accepts
    from mixlab.registry import model_arguments
    args = model_arguments(model)
    # the fewest blocks each family builds with (the recipe, not the depth, is under test)
    shrink = {"depths": (1, 1, 1)} if "depths" in args and "mv2_expand" in args else \
        {"depth": 11} if "block" in args else {"depth": 1} if "patch_size" in args else {}
    summary = train(TrainConfig(model=model, data="synthetic:40x3x32x32:10", recipe="strong", batch_size=16,
                                epochs=1, device="cpu", out=str(tmp_path / "run"), model_kwargs=shrink), log=None)
    assert summary["completed"] and math.isfinite(summary["test_loss"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"]["randaugment"] == "rand-m9-mstd0.5-inc1" and config["recipe"]["mixup"] == 0.8
    has_drop_path = model_accepts(model, None, 3, {"drop_path_rate": 0.1}) is None
    assert (config["model_kwargs"].get("drop_path_rate") == 0.1) == has_drop_path
