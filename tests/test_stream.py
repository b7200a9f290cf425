"""Real images at any size: mixed-size ImageFolders and file lists, the eval transform against timm's, the
streaming loader against the device-resident one, kill -9 on the streaming path, predict's preprocessing,
the automatic data path, and the one-line refusals."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mixlab
from PIL import Image
from safetensors.torch import load_file

from mixlab.cli import main as cli_main
from mixlab.data import DeviceLoader, ImageTransform, StreamingLoader, load_dataset, sources
from mixlab.data.transforms import pil_to_tensor, rrc_box
from conftest import needs_dataset

TINY = {"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64}
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXLAB_OFFLINE", "1")
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")


def mixed_folder(root, n_train=8, n_test=3, classes=("cat", "dog"), seed=0, sizes=(12, 30)):
    """Split ImageFolder of learnable classes (dark / bright) as RGB JPEGs, grayscale PNGs and RGB PNGs of
    random sizes in `sizes`; returns the root."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
                pixels = np.clip(40 + 150 * k + rng.integers(0, 50, (h, w, 3)), 0, 255).astype(np.uint8)
                if i % 3 == 0:
                    Image.fromarray(pixels[..., 0]).save(root / split / cls / f"{i}.png")        # grayscale
                elif i % 3 == 1:
                    Image.fromarray(pixels).save(root / split / cls / f"{i}.jpg", quality=90)     # RGB JPEG
                else:
                    Image.fromarray(pixels).save(root / split / cls / f"{i}.png")                 # RGB PNG
    return root


def cli(*argv):
    return cli_main([str(a) for a in argv])


def batches(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone(), s) for x, y, s in loader.iter_weighted()]


# --- the eval transform and the random-resized crop ----------------------------------------------------------
@pytest.mark.parametrize("size, crop_pct, interpolation, shape, mode", [
    (16, 1.0, "bilinear", (23, 41), "RGB"), (16, 0.875, "bicubic", (40, 25), "RGB"), (16, 0.875, "bilinear", (16, 16), "L"),
    (24, 0.9, "nearest", (9, 13), "L"), (32, 1.0, "bilinear", (32, 32), "RGB")])
def test_eval_transform_is_timms_eval_transform(size, crop_pct, interpolation, shape, mode):
    from timm.data import create_transform
    rng = np.random.default_rng(size)
    pixels = rng.integers(0, 256, shape + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
    img = Image.fromarray(pixels, mode)
    timm_tf = create_transform(size, is_training=False, crop_pct=crop_pct, interpolation=interpolation,
                               mean=(0.0,) * len(mode), std=(1.0,) * len(mode))
    ours = pil_to_tensor(ImageTransform(size, crop_pct, interpolation).eval_pil(img)).float() / 255
    assert ours.shape == (len(mode), size, size)
    assert torch.equal(ours, timm_tf(img))


def test_random_resized_crop_boxes():
    gen = lambda s: torch.Generator().manual_seed(s)   # noqa: E731
    boxes = [rrc_box(30, 50, gen(s), 0.2) for s in range(300)]
    assert boxes == [rrc_box(30, 50, gen(s), 0.2) for s in range(300)]               # a pure function of the seed
    for top, left, h, w in boxes:
        assert 0 <= top <= 30 - h and 0 <= left <= 50 - w and h >= 1 and w >= 1
        assert 0.2 * 1500 * 0.8 <= h * w <= 1500 and 3 / 4 * 0.75 <= w / h <= 4 / 3 * 1.3   # rounding slack
    assert len(set(boxes)) > 250
    assert {rrc_box(20, 20, gen(s), 1.0) for s in range(50)} == {(0, 0, 20, 20)}   # whole-area crops of a square
    assert rrc_box(10, 100, gen(0), 1.0) == (0, 43, 10, 13)                        # too wide: centre, ratio 4/3


# --- mixed-size folders train, with and without --img-size ---------------------------------------------------
def test_a_mixed_size_rgb_and_grayscale_folder_trains_with_and_without_img_size(tmp_path, capsys):
    folder = mixed_folder(tmp_path / "imgs")
    common = ["--model", "vit_paper", "--data", folder, "--epochs", "2", "--batch-size", "8", "--device", "cpu",
              "--model-kwargs", json.dumps(TINY)]
    assert cli("train", *common, "--out", tmp_path / "native") == 0
    log = capsys.readouterr().out
    assert "the images differ in size" in log and "resizing them to 32x32, vit_paper's native size" in log
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config["input_size"] == [3, 32, 32] and config["data_path"] == "memory"
    assert config["eval_transform"] == {"img_size": 32, "crop_pct": 1.0, "interpolation": "bilinear",
                                        "resize_size": 32, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert config["recipe"]["img_size"] == 32 and config["recipe"]["crop_pct"] == 1.0
    assert cli("train", *common, "--out", tmp_path / "sized", "--img-size", "16", "--set",
               "interpolation=bicubic") == 0
    assert "resizing" not in capsys.readouterr().out
    summary = json.loads((tmp_path / "sized" / "summary.json").read_text())
    assert summary["completed"] and summary["test_top1"] == 100.0     # dark vs bright: learnt in 2 epochs
    assert json.loads((tmp_path / "sized" / "config.json").read_text())["input_size"] == [3, 16, 16]
    assert cli("eval", "--run", tmp_path / "sized", "--device", "cpu") == 0
    assert "top-1 100.00%" in capsys.readouterr().out


def test_builtin_data_at_another_size_is_resized_once_on_load(tmp_path, capsys):
    # a patch-8 ViT cannot take 28 px images; --img-size 32 makes the grid fit (the MNIST case)
    common = ["--model", "vit_paper", "--data", "synthetic:96x1x28x28:4", "--epochs", "1", "--batch-size", "32",
              "--device", "cpu", "--model-kwargs", json.dumps({**TINY, "patch_size": 8})]
    assert cli("train", *common, "--out", tmp_path / "a") == 1
    assert "img_size 28 is not a multiple of patch_size 8" in capsys.readouterr().err
    assert cli("train", *common, "--out", tmp_path / "b", "--img-size", "32") == 0
    err = capsys.readouterr().err
    assert "synthetic train: resized 28x28 -> 32x32 once on load (shorter side to 32, centre crop, bilinear)" in err
    raw = load_dataset("synthetic:96x1x28x28:4", verbose=False)
    sized = load_dataset("synthetic:96x1x28x28:4", verbose=False, transform=ImageTransform(32))
    expected = pil_to_tensor(Image.fromarray(raw.images[5, 0].numpy()).resize((32, 32), Image.BILINEAR))
    assert torch.equal(sized.images[5], expected)


@needs_dataset("mnist")
def test_mnist_at_32(tmp_path):
    ds = load_dataset("mnist", "test", subset=20, verbose=False, transform=ImageTransform(32))
    assert ds.image_size == (1, 32, 32) and ds.mean == (0.1307,) and "resized 28x28 -> 32x32" in ds.source


# --- streaming == device-resident -----------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    return mixed_folder(tmp_path / "imgs", n_train=11, classes=("a", "b", "c"))


def test_a_worker_crops_one_image_as_the_batched_gather_does():
    from mixlab.data.loader import crop_flip
    from mixlab.data.stream import crop_flip_one
    gen = torch.Generator().manual_seed(0)
    for padding in (0, 1, 3, 7):          # 7 > the image: some crops are all padding
        x = torch.randint(0, 256, (9, 2, 5, 4), generator=gen, dtype=torch.uint8)
        offsets = torch.randint(0, 2 * padding + 1, (9, 2), generator=gen)
        flips = torch.rand(9, generator=gen) < 0.5
        want = crop_flip(x, offsets, flips, padding)
        for i in range(9):
            got = crop_flip_one(x[i].numpy(), *offsets[i].tolist(), bool(flips[i]), padding)
            assert torch.equal(torch.from_numpy(got), want[i])


@pytest.mark.parametrize("world", [1, 3])
def test_streaming_and_device_resident_give_the_same_batches(folder, world):
    t = ImageTransform(12)
    memory = load_dataset(str(folder), transform=t, verbose=False)
    files = load_dataset(str(folder), transform=t, stream=True, verbose=False)
    assert files.mean == memory.mean and files.std == memory.std and len(files) == len(memory) == 33
    kw = dict(seed=4, crop_padding=2, drop_last=False, world_size=world)
    for rank in range(world):
        device = DeviceLoader(memory, 4, rank=rank, **kw)
        for workers in (0, 2):
            stream = StreamingLoader(files, 4, rank=rank, workers=workers, **kw)
            for epoch in (0, 3):
                a, b = batches(device, epoch), batches(stream, epoch)
                assert len(a) == len(b) == 3 if world == 3 else 9
                for (xa, ya, sa), (xb, yb, sb) in zip(a, b):
                    assert torch.equal(xa, xb) and torch.equal(ya, yb) and sa == sb
            stream.close()
    # the last global batch (33 = 2·12 + 9) leaves rank 2 of 3 ... 9 samples: every rank has some; with 4 ranks
    # of batch 4 (global 16, last batch 1 sample) ranks 1-3 get the zero-weight stand-in
    lonely = [StreamingLoader(files, 4, seed=4, rank=r, world_size=4, drop_last=False) for r in range(4)]
    ref = DeviceLoader(memory, 4, seed=4, rank=3, world_size=4, drop_last=False)
    got, want = batches(lonely[3], 1), batches(ref, 1)
    assert got[-1][2] == want[-1][2] == 0.0 and torch.equal(got[-1][0], want[-1][0])


def test_streamed_random_resized_crops_do_not_depend_on_workers_or_ranks(folder):
    t = ImageTransform(12, 0.875, "bicubic", "random_resized_crop", 0.3)
    files = load_dataset(str(folder), transform=t, stream=True, verbose=False)
    single = batches(StreamingLoader(files, 6, seed=1, workers=0), 2)
    forked = batches(StreamingLoader(files, 6, seed=1, workers=2), 2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single, forked))
    rank1 = batches(StreamingLoader(files, 3, seed=1, rank=1, world_size=2), 2)
    assert all(torch.equal(a[0][1::2], b[0]) for a, b in zip(single, rank1))
    again = batches(StreamingLoader(files, 6, seed=1), 3)
    assert not torch.equal(single[0][0], again[0][0])                       # a new epoch draws new crops
    memory = load_dataset(str(folder), transform=t, verbose=False)
    assert memory.image_size == (3, 12, 12) and tuple(memory.images.shape[2:]) == (13, 13)   # the crop source
    device = batches(DeviceLoader(memory, 6, seed=1, transform=t), 2)
    assert device[0][0].shape == single[0][0].shape == (6, 3, 12, 12)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(device, single))     # same order, other pixels


@pytest.mark.slow
def test_sigkill_then_resume_on_the_streaming_path_is_bit_exact(tmp_path):
    folder = mixed_folder(tmp_path / "imgs", n_train=24, n_test=4, sizes=(14, 26))

    def cmd(out, workers, *extra):
        return [sys.executable, "-m", "mixlab.cli", "train", "--model", "ninformer_paper", "--data", str(folder),
                "--data-path", "stream", "--data-workers", str(workers), "--img-size", "16", "--epochs", "4",
                "--batch-size", "16", "--device", "cpu", "--out", str(out), "--model-kwargs",
                json.dumps({"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64}), *extra]

    env = dict(os.environ, PYTHONPATH=SRC, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    subprocess.run(cmd(tmp_path / "a", 0), check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen(cmd(tmp_path / "b", 2), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "b" / "trainer_state.pt"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert torch.load(state, weights_only=True)["epoch"] < 4
    subprocess.run(cmd(tmp_path / "b", 2, "--resume", str(tmp_path / "b")), check=True, env=env,
                   capture_output=True, timeout=300)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["data_path"] == "stream"
    assert (tmp_path / "a" / "steps.csv").read_text() == (tmp_path / "b" / "steps.csv").read_text()
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_two_torchrun_ranks_streaming_follow_one_process(tmp_path):
    """Streamed files under real DDP (gloo, CPU): each rank decodes its strided slice, and 2 ranks × 4 follow
    the loss curve of one process with batch 8 (dropout off; only the all-reduce's summation order differs)."""
    import csv
    folder = mixed_folder(tmp_path / "imgs", n_train=18, n_test=5)    # 36 images: the last batch is partial
    args = ["train", "--model", "vit_paper", "--data", str(folder), "--img-size", "16", "--data-path", "stream",
            "--data-workers", "1", "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--seed", "3",
            "--model-kwargs", json.dumps({**TINY, "drop_rate": 0.0})]
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    for name, launch in (("one", ["-m", "mixlab.cli"]),
                         ("ddp", ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mixlab.cli"])):
        done = subprocess.run([sys.executable, *launch, *args, "--out", str(tmp_path / name)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    losses = {}
    for name in ("one", "ddp"):
        with open(tmp_path / name / "steps.csv") as f:
            losses[name] = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses["one"]) == len(losses["ddp"]) == 2 * 5
    assert max(abs(a - b) / abs(a) for a, b in zip(losses["one"], losses["ddp"])) < 1e-4
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2


# --- the automatic data path ---------------------------------------------------------------------------------
def test_data_path_follows_the_memory_budget(tmp_path, monkeypatch, capsys):
    from mixlab.train import data_setup
    from mixlab.train.data_setup import choose_data_path
    gib = 2 ** 30
    assert choose_data_path("auto", 3 * gib, 2 * gib, ram=8 * gib)[0] == "memory"
    assert choose_data_path("auto", 5 * gib, 4 * gib, ram=8 * gib) == \
        ("stream", "5.00 GiB decoded > 4.00 GiB (0.5 of the available RAM)")
    assert choose_data_path("auto", 3 * gib, 2 * gib, ram=64 * gib, gpu_free=3 * gib)[0] == "stream"
    assert choose_data_path("stream", 1, 1, ram=64 * gib) == ("stream", "--data-path stream")
    folder = mixed_folder(tmp_path / "imgs", n_train=4, n_test=2)
    monkeypatch.setattr(data_setup, "available_ram", lambda: 2 * 4 * 2 * 3 * 16 * 16)   # fits 4 of 8 + 4 images
    assert cli("train", "--model", "vit_paper", "--data", folder, "--img-size", "16", "--epochs", "1", "--batch-size",
               "4", "--device", "cpu", "--out", tmp_path / "run", "--model-kwargs", json.dumps(TINY)) == 0
    assert "streaming the image files at 3x16x16 (0.00 GiB decoded > 0.00 GiB" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data_path"] == "stream" and config["train"]["data_path"] == "stream"


# --- predict prepares an image as training prepared the test split ------------------------------------------
def test_predict_applies_the_eval_transform_used_in_training(tmp_path, monkeypatch):
    from mixlab.predict import predict_files, read_image
    from mixlab.train import data_setup
    folder = mixed_folder(tmp_path / "imgs", sizes=(14, 40))
    seen = {}
    real = data_setup.prepare_data

    def keep(*a, **k):
        seen["data"] = real(*a, **k)
        return seen["data"]

    monkeypatch.setattr(data_setup, "prepare_data", keep)
    assert cli("train", "--model", "vit_paper", "--data", folder, "--img-size", "16", "--set",
               "train_transform=random_resized_crop", "--set", "interpolation=bicubic", "--epochs", "1",
               "--batch-size", "8", "--device", "cpu", "--out", tmp_path / "run", "--model-kwargs",
               json.dumps(TINY)) == 0
    test = seen["data"].test
    assert json.loads((tmp_path / "run" / "config.json").read_text())["eval_transform"]["crop_pct"] == 0.875
    model = mixlab.load(tmp_path / "run")   # the run's eval transform comes with it
    transform = ImageTransform.from_record(model.data_config["eval_transform"])
    assert transform == ImageTransform(16, 0.875, "bicubic")
    files = sorted((folder / "test").rglob("*.*"))   # ImageFolder order: sorted classes, sorted files
    for i, path in enumerate(files):
        assert torch.equal(read_image(path, [3, 16, 16], transform), test.images[i].float() / 255), path
    predictions, skipped = predict_files(model, files, top_k=2)
    mean, std = (torch.tensor(model.data_config[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        probs = model((test.images.float() / 255 - mean) / std).softmax(-1)
    assert not skipped
    for p, row in zip(predictions, probs):
        assert [v for _, v in p.top] == pytest.approx(row.topk(2).values.tolist(), abs=1e-6)


# --- file lists ---------------------------------------------------------------------------------------------
def test_file_lists_csv_with_split_column_txt_and_integer_labels(tmp_path):
    folder = mixed_folder(tmp_path / "imgs", n_train=3, n_test=2, classes=("cat", "dog"))
    rows = [(p.relative_to(tmp_path).as_posix(), p.parent.name, p.parts[-3]) for p in sorted(folder.rglob("*.*"))]
    (tmp_path / "all.csv").write_text("path,label,split\n" + "".join(f"{p},{y},{s}\n" for p, y, s in rows))
    t = ImageTransform(10)
    train = load_dataset(str(tmp_path / "all.csv"), "train", transform=t, verbose=False)
    test = load_dataset(str(tmp_path / "all.csv"), "test", transform=t, verbose=False)
    from_folder = load_dataset(str(folder), "test", transform=t, verbose=False)
    assert train.classes == ["cat", "dog"] and len(train) == 6 and len(test) == 4
    assert torch.equal(test.images, from_folder.images) and test.mean == from_folder.mean
    # Caffe-style "path label" text lists with integer labels; the test list is found beside the train list
    for split in ("train", "test"):
        lines = [f"{tmp_path / p} {int(y == 'dog') * 2}" for p, y, s in rows if s == split]
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    listed = load_dataset(str(tmp_path / "train.txt"), "test", transform=t, stream=True, verbose=False)
    assert listed.classes == ["0", "1", "2"] and listed.labels.tolist() == [0, 0, 2, 2]
    (tmp_path / "bad.csv").write_text("imgs/train/cat/0.png,cat\nimgs/train/dog/gone.png,dog\n")
    with pytest.raises(ValueError, match=r"^1 unreadable image\(s\) in .*bad.csv, e.g. .*gone.png: .*No such file"):
        load_dataset(str(tmp_path / "bad.csv"), transform=t, verbose=False)
    (tmp_path / "short.csv").write_text("imgs/train/cat/0.png\n")
    with pytest.raises(ValueError, match=r"short.csv:1: expected 'path,label'"):
        load_dataset(str(tmp_path / "short.csv"), transform=t, verbose=False)


# --- one-line refusals -----------------------------------------------------------------------------------------
def test_bad_sizes_and_unreadable_files_are_one_line_errors(tmp_path, capsys):
    folder = mixed_folder(tmp_path / "imgs", n_train=3, n_test=1)
    base = ["train", "--model", "vit_paper", "--data", folder, "--epochs", "1", "--device", "cpu",
            "--model-kwargs", json.dumps(TINY)]

    def cli_code(*argv):
        try:
            return cli(*argv)
        except SystemExit as e:   # argparse's refusals exit from the parser
            return e.code

    def one_line_error(code, pattern):
        """Non-zero exit; stderr ends in exactly one `mixlab train: error: …` line matching `pattern`."""
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("mixlab train: error: ")]
        assert code != 0 and len(errors) == 1 and lines[-1] == errors[0], lines
        assert re.search(pattern, errors[0]), errors[0]

    one_line_error(cli_code(*base, "--out", tmp_path / "a", "--img-size", "0"),
                   r"--img-size: expected a positive integer")
    one_line_error(cli(*base, "--out", tmp_path / "b", "--img-size", "30"),
                   r"^mixlab train: error: image size 30 does not fit vit_paper: img_size 30 is not a multiple of "
                   r"patch_size 4; choose another --img-size$")
    assert not (tmp_path / "b" / "config.json").exists()
    one_line_error(cli(*base, "--out", tmp_path / "c", "--set", "img_size=-2"), r"img_size must be at least 1, got -2")
    one_line_error(cli(*base, "--out", tmp_path / "d", "--set", "crop_pct=1.5"), r"crop_pct must be at most 1.0")
    one_line_error(cli(*base, "--out", tmp_path / "e", "--set", "interpolation=cubic"),
                   r"interpolation must be one of bilinear, bicubic, nearest, lanczos")
    one_line_error(cli("train", "--model", "vit_paper", "--data", "synthetic", "--data-path", "stream",
                       "--out", tmp_path / "f"), r"--data-path stream decodes image files")
    (folder / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    one_line_error(cli(*base, "--out", tmp_path / "g", "--data-path", "stream"),
                   r"1 unreadable image\(s\) in .*train, e.g. .*broken.jpg: cannot identify image file")
    # a file whose header reads but whose pixels do not: the streamed run stops at it, naming it
    (folder / "train" / "cat" / "broken.jpg").unlink()
    good = (folder / "train" / "cat" / "1.jpg").read_bytes()
    (folder / "train" / "cat" / "1.jpg").write_bytes(good[: good.index(b"\xff\xda") + 20])   # cut in the scan data
    one_line_error(cli(*base, "--out", tmp_path / "h", "--data-path", "stream"),
                   r"unreadable image .*1.jpg: .*truncated.*\(fix or remove it, then resume the run\)")
