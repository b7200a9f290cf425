"""mixlab.data: readers and their verification, source lookup, subsets, and the device-resident loader."""
import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mixlab.data import (DATASETS, DeviceLoader, ImageDataset, ImageTransform, ensure_default_dataset, load_dataset,
                         stratified_indices)
from mixlab.data import acquire
from mixlab.data import load as load_mod
from mixlab.data import sources
from mixlab.data import spec as spec_mod
from mixlab.data.spec import IDX_FILES
from mixlab.data.cifar import safe_load
from mixlab.data.idx import read_idx
from conftest import dataset_folder, needs_dataset


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache, no network probe, and no Debian package, so each test sees only what it sets up."""
    monkeypatch.setenv("MIXLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXLAB_OFFLINE", "1")
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")


def patch_spec(monkeypatch, name, **changes):
    """Replace fields of a built-in dataset's spec for one test (e.g. counts of a tiny fake copy)."""
    import dataclasses
    original = spec_mod.BUILTIN[name]
    monkeypatch.setitem(spec_mod.BUILTIN, name, dataclasses.replace(original, **changes))


def write_idx(path, array, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    content = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(content) if compress else content)
    return hashlib.sha256(content).hexdigest()


def fake_mnist(root, n=20, folder="mnist", compress=True):
    """A tiny MNIST-layout folder; returns (images, labels, {file: sha256})."""
    d = root / folder
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
    suffix = ".gz" if compress else ""
    sums = {}
    for split in ("train", "test"):
        img_name, lab_name = IDX_FILES[split]
        sums[img_name] = write_idx(d / f"{img_name}{suffix}", images, compress)
        sums[lab_name] = write_idx(d / f"{lab_name}{suffix}", labels, compress)
    return images, labels, sums


def write_cifar(root, variant, n_train, n_test):
    """The official python-pickle layout (protocol 2, bytes keys), with random pixels; returns the arrays."""
    rng = np.random.default_rng(variant)
    k, label_key = (10, b"labels") if variant == 10 else (100, b"fine_labels")
    d = root / ("cifar-10-batches-py" if variant == 10 else "cifar-100-python")
    d.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, k, n)]
        out[split] = (data, labels)
        files = ([f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]) if variant == 10 \
            else [split]
        for f, rows in zip(files, np.array_split(np.arange(n), len(files))):
            batch = {b"batch_label": b"fake", label_key: [labels[i] for i in rows], b"data": data[rows],
                     b"filenames": [f"{i}.png".encode() for i in rows]}
            (d / f).write_bytes(pickle.dumps(batch, protocol=2))
    names = [f"class_{i}".encode() for i in range(k)]
    meta = {b"label_names": names} if variant == 10 else {b"fine_label_names": names, b"coarse_label_names": []}
    (d / ("batches.meta" if variant == 10 else "meta")).write_bytes(pickle.dumps(meta, protocol=2))
    return out


# ---------------------------------------------------------------- real data (MIXLAB_DATA)

# The folders are found at collection, before the autouse `isolated` fixture hides the cache and the Debian
# package (/usr/share/datasets/fashion-mnist, the only copy on a fresh machine with the apt package).
@pytest.mark.parametrize("name, folder, per_class_test", [
    pytest.param("fashion-mnist", dataset_folder("fashion-mnist"), [1000] * 10, marks=needs_dataset("fashion-mnist")),
    pytest.param("mnist", dataset_folder("mnist"), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
                 marks=needs_dataset("mnist")),
])
def test_real_idx_datasets_verify_counts_and_classes(name, folder, per_class_test):
    test = load_dataset(name, "test", data_dir=folder, verbose=False)   # sha256 of every file is checked
    assert len(test) == 10000 and test.image_size == (1, 28, 28) and not test.lossy
    assert torch.bincount(test.labels).tolist() == per_class_test
    assert test.source.startswith(str(folder))
    train = load_dataset(name, "train", data_dir=folder, subset=1000, verbose=False)
    assert len(train) == 1000 and train.num_classes == 10
    if name == "fashion-mnist":
        assert test.classes[0] == "T-shirt/top" and test.classes[9] == "Ankle boot"
        assert test.mean == pytest.approx((0.2860,)) and torch.bincount(train.labels).tolist() == [100] * 10
        # the published train mean is what the pixels give
        full = load_dataset(name, "train", data_dir=folder, verbose=False)
        assert len(full) == 60000 and full.images.float().mean().item() / 255 == pytest.approx(0.2860, abs=1e-4)


CIFAR10_JPEG = dataset_folder("cifar10-jpeg")     # at collection, before `isolated` (see above)


@needs_dataset("cifar10-jpeg")
def test_real_cifar10_jpeg_is_lossy_cached_and_subset_decodes_match(tmp_path, monkeypatch):
    folder = CIFAR10_JPEG
    full = load_dataset("cifar10-jpeg", "test", data_dir=folder, verbose=False)
    assert full.lossy and "lossy" in full.source and "decoded and cached" in full.source
    assert len(full) == 10000 and full.image_size == (3, 32, 32) and torch.bincount(full.labels).tolist() == [1000] * 10
    means = full.images.float().mean(dim=(0, 2, 3)) / 255   # shared/data/README.md: (0.4941, 0.4851, 0.4504)
    assert means.tolist() == pytest.approx([0.4941, 0.4851, 0.4504], abs=2e-4)
    again = load_dataset("cifar10-jpeg", "test", data_dir=folder, verbose=False)
    assert "decoded cache" in again.source and torch.equal(again.images, full.images)
    monkeypatch.setenv("MIXLAB_CACHE", str(tmp_path / "fresh"))   # no cache: only the subset is decoded
    part = load_dataset("cifar10-jpeg", "test", data_dir=folder, subset=50, seed=3, verbose=False)
    idx = stratified_indices(full.labels, 50, seed=3)
    assert "decoded subset" in part.source and torch.equal(part.images, full.images[idx])
    assert torch.bincount(part.labels).tolist() == [5] * 10


# ---------------------------------------------------------------- IDX reader and verification

def test_idx_dataset_from_a_root_with_checksums_and_counts(tmp_path, monkeypatch):
    images, labels, sums = fake_mnist(tmp_path, compress=False)
    patch_spec(monkeypatch, "mnist", sha256=sums, counts={"train": 20, "test": 20})
    ds = load_dataset("mnist", "test", data_dir=tmp_path, download=False, verbose=False)
    assert torch.equal(ds.images[:, 0], torch.as_tensor(images, dtype=torch.uint8))
    assert ds.labels.tolist() == labels.tolist() and ds.labels.dtype == torch.int64
    assert ds.classes == [str(d) for d in range(10)] and ds.mean == (0.1307,)
    patch_spec(monkeypatch, "mnist", sha256=sums, counts={"train": 60000, "test": 10000})
    with pytest.raises(ValueError, match="expected 10000 images"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False, verbose=False)


def test_idx_checksum_mismatch_names_the_file(tmp_path):
    fake_mnist(tmp_path, folder="fashion-mnist")   # valid IDX, but not the official content
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: sha256 .* expected 5b4141f0"):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=False, verbose=False)


def test_truncated_or_corrupt_idx_raises_one_line_error_naming_the_file(tmp_path):
    good = tmp_path / "x-idx3-ubyte.gz"
    write_idx(good, np.zeros((5, 28, 28)))
    assert read_idx(good).shape == (5, 28, 28)
    cut = tmp_path / "cut-idx3-ubyte.gz"
    cut.write_bytes(good.read_bytes()[:-30])
    garbage = tmp_path / "garbage-idx3-ubyte.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"not a gzip stream at all" * 4)
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(gzip.decompress(good.read_bytes())[:-1])
    magic = tmp_path / "magic-idx3-ubyte"
    magic.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    for path, reason in ((cut, "corrupt or truncated gzip"), (garbage, "corrupt or truncated gzip"),
                         (short, "truncated or corrupt"), (magic, "bad magic")):
        with pytest.raises(ValueError, match=reason) as err:
            read_idx(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- CIFAR pickles

@pytest.mark.parametrize("variant", [10, 100])
def test_cifar_reader_on_official_pickle_layout(tmp_path, monkeypatch, variant):
    name = f"cifar{variant}"
    arrays = write_cifar(tmp_path, variant, n_train=25, n_test=7)
    patch_spec(monkeypatch, name, counts={"train": 25, "test": 7})
    for split in ("train", "test"):
        ds = load_dataset(name, split, data_dir=tmp_path, download=False, verbose=False)
        data, labels = arrays[split]
        assert ds.image_size == (3, 32, 32) and len(ds) == len(labels) and ds.labels.tolist() == labels
        # a row is the R plane, then G, then B, each 32x32 row-major
        assert torch.equal(ds.images[3, 1], torch.from_numpy(data[3, 1024:2048].reshape(32, 32)))
        assert ds.num_classes == variant and ds.classes[1] == "class_1"
    assert ds.mean == spec_mod.BUILTIN[name].mean
    patch_spec(monkeypatch, name, counts={"train": 50000, "test": 10000})
    with pytest.raises(ValueError, match="holds 7 images, expected 10000"):
        load_dataset(name, "test", data_dir=tmp_path, download=False, verbose=False)


def test_truncated_pickle_raises_one_line_error_naming_the_file(tmp_path):
    write_cifar(tmp_path, 10, 10, 4)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[: len(batch.read_bytes()) // 2])
    with pytest.raises(ValueError, match="unreadable or unsafe pickle") as err:
        load_dataset("cifar10", "test", data_dir=tmp_path, download=False, verbose=False)
    assert str(batch) in str(err.value) and "\n" not in str(err.value)


def test_restricted_unpickler_refuses_code_and_loads_plain_data(tmp_path, shell_payload):
    payload, marker = shell_payload
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": payload}, protocol=2))
    assert pickle.loads(pickle.dumps("sanity")) == "sanity"
    with pytest.raises(ValueError, match=r"refusing to load (posix|nt|os)\.system"):
        safe_load(evil)
    assert not marker.exists()
    plain = tmp_path / "plain"
    plain.write_bytes(pickle.dumps({b"a": [1, b"x", "y"], "arr": np.arange(6, dtype=np.uint8).reshape(2, 3)}, 5))
    loaded = safe_load(plain)
    assert loaded["a"] == [1, b"x", "y"] and loaded["arr"].tolist() == [[0, 1, 2], [3, 4, 5]]


# ---------------------------------------------------------------- ImageFolder, synthetic, lookup

def test_image_folder_reads_pngs_with_classes_splits_and_train_stats(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("dog", "cat"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
                written[(split, cls, i)] = pixels
    train = load_dataset(str(tmp_path), "train", verbose=False)
    test = load_dataset(f"imagefolder:{tmp_path}", "test", verbose=False)
    assert train.classes == ["cat", "dog"] and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.image_size == (3, 6, 5) and len(test) == 4
    assert torch.equal(test.images[2], torch.from_numpy(written[("test", "dog", 0)].transpose(2, 0, 1).copy()))
    pixels = np.stack([v for k, v in written.items() if k[0] == "train"]) / 255
    assert test.mean == pytest.approx(tuple(pixels.mean(axis=(0, 1, 2))), abs=1e-9)
    assert test.std == pytest.approx(tuple(pixels.std(axis=(0, 1, 2))), abs=1e-9)
    Image.fromarray(np.zeros((7, 5, 3), np.uint8)).save(tmp_path / "test" / "cat" / "odd.png")
    with pytest.raises(ValueError, match=r"test \(ImageFolder\): images differ in size \(5x6, 5x7\); give an image size"):
        load_dataset(str(tmp_path), "test", verbose=False)   # the library asks; `mixlab train` picks one
    resized = load_dataset(str(tmp_path), "test", verbose=False, transform=ImageTransform(4))
    assert resized.image_size == (3, 4, 4) and len(resized) == 5


def test_grayscale_image_folder_without_splits_has_one_channel(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((4, 4), 200 if cls == "b" else 10, np.uint8)).save(tmp_path / cls / "0.png")
    ds = load_dataset(str(tmp_path), verbose=False)
    assert ds.image_size == (1, 4, 4) and ds.images[1].unique().tolist() == [200]
    assert "no split folders" in ds.source


def test_a_folder_without_splits_reads_its_headers_once_for_both_splits(tmp_path, monkeypatch):
    from PIL import Image

    root = tmp_path / "images"     # not tmp_path itself, where the test cache folder appears
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(root / cls / "0.png")
    calls, folder_index = [], load_mod.folder_index
    monkeypatch.setattr(load_mod, "folder_index", lambda *a, **k: calls.append(a) or folder_index(*a, **k))
    train, test = (load_dataset(str(root), split, verbose=False) for split in ("train", "test"))
    assert len(calls) == 1
    assert len(train) == len(test) == 2 and "no split folders" in test.source


def test_synthetic_is_deterministic_configurable_and_learnable():
    a = load_dataset("synthetic:300x2x12x10:5", verbose=False)
    b = load_dataset("synthetic", verbose=False, num_samples=300, image_size=(2, 12, 10), num_classes=5)
    assert torch.equal(a.images, b.images) and a.image_size == (2, 12, 10) and a.num_classes == 5
    test = load_dataset("synthetic:300x2x12x10:5", "test", verbose=False)
    assert len(test) == 60 and test.mean == a.mean and not torch.equal(test.images[:10], a.images[:10])
    # nearest class mean of the train split classifies the test split: the classes are learnable
    centroids = torch.stack([a.images[a.labels == k].float().mean(0) for k in range(5)]).flatten(1)
    predicted = torch.cdist(test.images.float().flatten(1), centroids).argmin(1)
    assert (predicted == test.labels).float().mean() > 0.9
    with pytest.raises(ValueError, match="bad synthetic spec"):
        load_dataset("synthetic:12xfoo", verbose=False)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_dataset("synthetic", "validation", verbose=False)


def test_unknown_name_and_missing_dataset_give_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="did you mean cifar10"):
        load_dataset("cifar1O", verbose=False)
    monkeypatch.setenv("MIXLAB_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="--data-dir .*mine is not a folder"):   # never a silent fallback
        load_dataset("fashion-mnist", data_dir=tmp_path / "mine", download=False, verbose=False)
    (tmp_path / "mine").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path / "mine", download=False, verbose=False)
    message = str(err.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message and "MIXLAB_DATA" in message
    for looked in (tmp_path / "mine" / "fashion-mnist", tmp_path / "data" / "FashionMNIST" / "raw",
                   tmp_path / "cache" / "fashion-mnist", tmp_path / "no-debian"):
        assert str(looked) in message


def test_search_order_prefers_data_dir_then_env_then_cache_then_debian(tmp_path, monkeypatch):
    for d in ("arg/fashion-mnist", "env/FashionMNIST/raw", "cache/fashion-mnist", "no-debian"):
        (tmp_path / d).mkdir(parents=True)
        for f in IDX_FILES["test"]:
            (tmp_path / d / f"{f}.gz").touch()
    monkeypatch.setenv("MIXLAB_DATA", str(tmp_path / "env"))
    order = [tmp_path / "arg/fashion-mnist", tmp_path / "env/FashionMNIST/raw", tmp_path / "cache/fashion-mnist",
             tmp_path / "no-debian"]
    assert sources.find_folder("fashion-mnist", "test", tmp_path / "arg")[0] == order[0]
    assert sources.find_folder("fashion-mnist", "test")[0] == order[1]
    monkeypatch.delenv("MIXLAB_DATA")
    assert sources.find_folder("fashion-mnist", "test")[0] == order[2]
    monkeypatch.setenv("MIXLAB_CACHE", str(tmp_path / "elsewhere"))
    assert sources.find_folder("fashion-mnist", "test")[0] == order[3]
    assert sources.find_folder("fashion-mnist", "train")[0] is None   # the test files alone are not a train split


def test_ensure_default_dataset_runs_apt_as_root_then_errors_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("MIXLAB_DATA", raising=False)
    debian = tmp_path / "no-debian"
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        debian.mkdir(exist_ok=True)
        for files in IDX_FILES.values():
            for f in files:
                (debian / f"{f}.gz").touch()
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(acquire.os, "geteuid", lambda: 0, raising=False)
    monkeypatch.setattr(acquire.shutil, "which", lambda cmd: "/usr/bin/apt-get")
    monkeypatch.setattr(acquire.subprocess, "run", fake_run)
    assert ensure_default_dataset(verbose=False) == debian
    assert commands == [["apt-get", "install", "-y", "dataset-fashion-mnist"]]

    def no_download(name, verbose=True):
        raise RuntimeError("offline")

    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "still-none")
    monkeypatch.setattr(acquire.os, "geteuid", lambda: 1000, raising=False)
    monkeypatch.setattr(acquire, "download", no_download)
    with pytest.raises(FileNotFoundError) as err:
        ensure_default_dataset(verbose=False)
    assert "\n" not in str(err.value) and "torchvision download failed" in str(err.value)
    assert len(commands) == 1   # not root: apt was not tried again


# ---------------------------------------------------------------- subsets

def test_stratified_subset_is_proportional_and_deterministic():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_indices(labels, 10, seed=1)
    assert torch.bincount(labels[idx]).tolist() == [5, 3, 2]
    assert torch.equal(idx, stratified_indices(labels, 10, seed=1)) and torch.equal(idx, idx.sort().values)
    assert not torch.equal(idx, stratified_indices(labels, 10, seed=2))
    assert torch.bincount(labels[stratified_indices(labels, 7, seed=0)]).tolist() == [4, 2, 1]  # 3.5/2.1/1.4
    assert len(stratified_indices(labels, 500)) == 100
    with pytest.raises(ValueError, match="positive integer"):
        stratified_indices(labels, 0)
    ds = load_dataset("synthetic:200x1x8x8", subset=50, seed=4, verbose=False)
    assert torch.bincount(ds.labels).tolist() == [5] * 10 and "stratified subset of 50/200, seed 4" in ds.source


def test_dataset_contract_is_checked():
    with pytest.raises(ValueError, match="labels range"):
        ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 3]), ["a", "b"], (0.5,), (0.2,), "x")
    with pytest.raises(ValueError, match="images must be uint8"):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), ["a", "b"], (0.5,), (0.2,), "x")
    assert set(DATASETS) >= {"mnist", "fashion-mnist", "cifar10", "cifar100", "cifar10-jpeg", "synthetic"}


# ---------------------------------------------------------------- loader

@pytest.fixture(scope="module")
def small():
    return load_dataset("synthetic:50x3x8x6:5", verbose=False)


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def reference_augment(ds, loader):
    """The epoch's batches written the slow, obvious way: per sample pad, slice, flip, normalise."""
    order, offsets, flips = loader.epoch_plan()
    p, (_, h, w) = loader.padding, ds.image_size
    mean, std = torch.tensor(ds.mean).view(-1, 1, 1), torch.tensor(ds.std).view(-1, 1, 1)
    xs = []
    for pos, i in enumerate(order.tolist()):
        img = ds.images[i].float() / 255
        if p:
            dy, dx = offsets[pos].tolist()
            img = F.pad(img, (p, p, p, p))[:, dy:dy + h, dx:dx + w]
        if flips is not None and flips[pos]:
            img = img.flip(-1)
        xs.append((img - mean) / std)
    return torch.stack(xs), ds.labels[order]


def test_loader_crop_flip_equals_per_sample_reference(small):
    loader = DeviceLoader(small, 8, seed=3, crop_padding=2)
    loader.set_epoch(5)
    got = batches(loader)
    ref_x, ref_y = reference_augment(small, loader)
    n = len(got) * 8
    assert len(got) == len(loader) == 50 // 8
    torch.testing.assert_close(torch.cat([x for x, _ in got]), ref_x[:n], rtol=0, atol=1e-5)
    assert torch.equal(torch.cat([y for _, y in got]), ref_y[:n])
    _, offsets, flips = loader.epoch_plan()
    assert 0 < flips.sum() < 50 and offsets.min() == 0 and offsets.max() == 4   # both directions exercised


def test_loader_is_a_pure_function_of_seed_and_epoch(small):
    def epoch(seed, e):
        loader = DeviceLoader(small, 10, seed=seed)
        loader.set_epoch(e)
        return torch.cat([x for x, _ in batches(loader)])

    assert torch.equal(epoch(0, 1), epoch(0, 1))
    assert not torch.equal(epoch(0, 1), epoch(0, 2)) and not torch.equal(epoch(0, 1), epoch(1, 1))
    loader = DeviceLoader(small, 10)
    loader.set_epoch(2)
    full = batches(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[2:], loader.iter_from(2)))   # mid-epoch resume


def test_eval_loader_keeps_order_without_augmentation_or_drop_last(small):
    loader = DeviceLoader(small, 16, train=False, normalize=False)
    got = batches(loader)
    assert len(loader) == 4 and [len(y) for _, y in got] == [16, 16, 16, 2]
    torch.testing.assert_close(torch.cat([x for x, _ in got]), small.images.float() / 255, rtol=0, atol=1e-6)
    x = torch.cat([x for x, _ in batches(DeviceLoader(small, 50, train=False))])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


@pytest.mark.parametrize("drop_last", [True, False])
def test_ddp_ranks_slice_the_global_batch_sample_for_sample(small, drop_last):
    world = 3
    single = DeviceLoader(small, 4 * world, seed=7, drop_last=drop_last)
    ranks = [DeviceLoader(small, 4, seed=7, rank=r, world_size=world, drop_last=drop_last) for r in range(world)]
    for loader in [single, *ranks]:
        loader.set_epoch(1)
    expected = batches(single)
    per_rank = [batches(r) for r in ranks]
    assert all(len(r) == len(single) == (4 if drop_last else 5) for r in ranks)
    for g, (x, y) in enumerate(expected):
        for r in range(world):
            assert torch.equal(per_rank[r][g][0], x[r::world]) and torch.equal(per_rank[r][g][1], y[r::world])
    assert sum(r.num_samples for r in ranks) == (48 if drop_last else 50)


def test_loader_rejects_bad_arguments(small):
    with pytest.raises(ValueError, match="rank"):
        DeviceLoader(small, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        DeviceLoader(small, 40, world_size=2)
    with pytest.raises(ValueError, match="normalize needs 3"):
        DeviceLoader(small, 4, normalize=((0.5,), (0.2,)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_on_cuda_matches_cpu(small):
    cpu, gpu = DeviceLoader(small, 8, seed=1), DeviceLoader(small, 8, seed=1, device="cuda")
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xc, xg.cpu(), rtol=0, atol=1e-6)
