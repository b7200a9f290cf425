"""What a run trains on: its image size, where the images live (device-resident or streamed), both splits,
and the training loader.

Image size S: the recipe's `img_size` (`--img-size`) when set. Otherwise built-in and synthetic data keep
their own size; an ImageFolder or a file list keeps its images' size when they all share one square size the
model accepts, and otherwise goes to the model's native size (its registered input size), said in one log
line.

Data path (`--data-path auto`): built-in and synthetic datasets are held in memory (they are small). Image
files are decoded once into memory when the decoded splits — N × C × S × S bytes, the training split at the
crop-source size for random-resized crops — fit `RAM_FRACTION` of the available RAM and, on a GPU, the
training split fits `GPU_FRACTION` of its free memory; otherwise they are streamed from disk. `memory` and
`stream` force either. The run records the path it took in config.json.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..fileio import first_line

if TYPE_CHECKING:   # the annotations of `RunData` only
    from ..data.dataset import ImageDataset
    from ..data.files import FileDataset
    from ..data.transforms import ImageTransform

RAM_FRACTION = 0.5
GPU_FRACTION = 0.5
FEW_IMAGES = 512        # below this many files, decoding in the main process beats starting worker processes
MAX_WORKERS = 8


@dataclass
class RunData:
    train: ImageDataset | FileDataset     # memory | stream
    test: ImageDataset | FileDataset
    transform: ImageTransform             # the run's ImageTransform (S, crop_pct, interpolation, train transform)
    path: str              # memory | stream
    workers: int           # DataLoader processes decoding files


def available_ram():
    """Bytes of RAM available to new allocations (MemAvailable), or the free pages where /proc is absent."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gib(n):
    return f"{n / 2**30:.2f} GiB"


def choose_data_path(asked, host_bytes, device_bytes, ram, gpu_free=None):
    """(memory | stream, reason). host_bytes: both decoded splits; device_bytes: the training split, which
    lives on the GPU when training there (gpu_free = its free bytes, None on CPU)."""
    if asked in ("memory", "stream"):
        return asked, f"--data-path {asked}"
    budget = RAM_FRACTION * ram
    if host_bytes > budget:
        return "stream", f"{_gib(host_bytes)} decoded > {_gib(budget)} ({RAM_FRACTION:g} of the available RAM)"
    if gpu_free is not None and device_bytes > GPU_FRACTION * gpu_free:
        return "stream", (f"{_gib(device_bytes)} decoded training images > {_gib(GPU_FRACTION * gpu_free)} "
                          f"({GPU_FRACTION:g} of the free GPU memory)")
    return "memory", f"{_gib(host_bytes)} decoded fits in {_gib(budget)} ({RAM_FRACTION:g} of the available RAM)"


def model_accepts(model, size, channels, model_kwargs):
    """None when `model` builds at size×size, else the first line of its refusal (built on the meta device)."""
    from .. import create_model, model_cfg
    classes = 0 if model_cfg(model).get("num_classes") == 0 else 2   # a denoiser has no classifier head
    try:
        with torch.device("meta"):
            create_model(model, num_classes=classes, in_chans=channels, img_size=size, **(model_kwargs or {}))
    except ValueError as e:
        return first_line(e)
    except Exception:   # noqa: BLE001 (other failures are the real build's to report, with its message)
        return None
    return None


def choose_img_size(sizes, channels, model, model_kwargs, where):
    """(S, note) for image files of `sizes` [(h, w)] when the recipe sets none (module docstring)."""
    from ..registry import model_cfg
    if len(sizes) == 1 and sizes[0][0] == sizes[0][1]:
        refusal = model_accepts(model, sizes[0][0], channels, model_kwargs)
        if refusal is None:
            return sizes[0][0], None
        why = f"are {sizes[0][1]}x{sizes[0][0]}, which {model} refuses ({refusal})"
    elif len(sizes) == 1:
        why = f"are {sizes[0][1]}x{sizes[0][0]}, not square"
    else:
        shown = ", ".join(f"{w}x{h}" for h, w in sizes[:3]) + (", …" if len(sizes) > 3 else "")
        why = f"differ in size ({len(sizes)} sizes: {shown})"
    native = int(model_cfg(model)["input_size"][1])
    return native, (f"{where}: the images {why}; resizing them to {native}x{native}, {model}'s native size "
                    f"(set --img-size to choose another)")


def _workers(asked, n_images):
    """DataLoader processes: as asked; else none for a few hundred files, else one per intra-op thread of
    this process (so K runs sharing a machine under `--workers K` share its cores), at most MAX_WORKERS."""
    if asked is not None:
        return asked
    if n_images < FEW_IMAGES:
        return 0
    return max(1, min(MAX_WORKERS, torch.get_num_threads()))


def prepare_data(config, recipe, device, log):
    """Both splits of `config.data` at the run's image transform, on the chosen data path (`RunData`)."""
    from ..data import ImageTransform, data_source
    from ..data.transforms import DEFAULT_CROP_PCT

    source = data_source(config.data, data_dir=config.data_dir)   # an unknown name: one line, nothing read
    files = source.streamable
    size, note = recipe.img_size, None
    if size is not None:   # refuse a size the model cannot take before any image is decoded
        refusal = model_accepts(config.model, size, 3, config.model_kwargs)
        if refusal:
            raise ValueError(f"image size {size} does not fit {config.model}: {refusal}; choose another --img-size")
    facts = source.describe()   # image files: their headers only
    channels, counts = facts.channels, [facts.counts["train"], facts.counts["test"]]
    if size is None and files:
        size, note = choose_img_size(list(facts.sizes), channels, config.model, config.model_kwargs, config.data)
    elif size is None:
        h, w = facts.sizes[0]
        size = h if h == w else None
    if note:
        log(note)
    crop_pct = recipe.crop_pct or DEFAULT_CROP_PCT[recipe.train_transform]
    if size is None and recipe.train_transform == "random_resized_crop":
        raise ValueError(f"{config.data}: random_resized_crop needs a square image size; set --img-size")
    transform = ImageTransform(size, crop_pct, recipe.interpolation, recipe.train_transform, recipe.crop_scale_min)
    if files:
        if config.subset:
            counts = [min(config.subset, n) for n in counts]
        stored = transform.source() if transform.rrc else transform
        train_bytes = counts[0] * channels * stored.img_size ** 2
        host = train_bytes + counts[1] * channels * size ** 2
        gpu_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        data_path, reason = choose_data_path(config.data_path, host, train_bytes, available_ram(), gpu_free)
        workers = _workers(config.data_workers, sum(counts))
        log(f"{config.data}: {'streaming the image files' if data_path == 'stream' else 'decoding the images once into memory'}"
            f" at {channels}x{size}x{size} ({reason}; {workers} DataLoader worker(s))")
    else:   # held in memory; `--data-path stream` is the source's to refuse (DataSource.load)
        data_path, workers = "stream" if config.data_path == "stream" else "memory", 0
    kw = dict(subset=config.subset, seed=config.seed, transform=transform, stream=data_path == "stream",
              workers=workers)
    train_ds = source.load("train", **kw)
    if getattr(config, "validation", None):
        train_ds, test_ds = validation_split(train_ds, config.validation)
        log(f"{config.data}: {len(test_ds)} training images held out for validation (seed {VALIDATION_SEED}); "
            f"training on the other {len(train_ds)}, the test set unused")
    else:
        test_ds = source.load("test", **kw)
    return RunData(train_ds, test_ds, transform, data_path, workers)


VALIDATION_SEED = 20_231   # one held-out set for every run and seed: lr candidates are judged on the same images


def validation_indices(labels, n, num_classes=None):
    """(train indices, validation indices) of a training split: a stratified `n` held out with VALIDATION_SEED,
    the rest kept, both sorted and disjoint."""
    from ..data.dataset import stratified_indices
    if n >= len(labels):
        raise ValueError(f"a validation split of {n} leaves nothing to train on ({len(labels)} training images)")
    val = stratified_indices(labels, n, VALIDATION_SEED, num_classes)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val


def validation_split(train_ds, n):
    """(train, validation) datasets carved from `train_ds` (`validation_indices`); the statistics stay the
    training split's."""
    rest, val = validation_indices(train_ds.labels, n, train_ds.num_classes)
    return (train_ds.take(rest, f"without the {n}-image validation split (seed {VALIDATION_SEED})"),
            train_ds.take(val, f"{n}-image validation split of the training set (seed {VALIDATION_SEED})"))


def normalisation(spec, dataset):
    """The recipe's `normalize` ('dataset', [m, s] or [[m…], [s…]]) as per-channel lists for this data."""
    c = dataset.image_size[0]
    if spec == "dataset" or spec is None:
        return list(dataset.mean), list(dataset.std)
    mean, std = spec
    mean = [float(mean)] * c if isinstance(mean, (int, float)) else [float(m) for m in mean]
    std = [float(std)] * c if isinstance(std, (int, float)) else [float(s) for s in std]
    if len(mean) != c or len(std) != c:   # e.g. CIFAR statistics on one-channel data
        return list(dataset.mean), list(dataset.std)
    return mean, std


def make_train_loader(data, recipe, batch_size, device, mean, std, seed, rank, world_size):
    """The training loader for `data`: device-resident or streaming, one epoch plan either way, with the
    recipe's strong augmentation (RandAugment, random erasing, Mixup/CutMix) if it asks for any."""
    from ..data import DeviceLoader, StreamingLoader
    from ..data.augment import Augmentation
    kw = dict(train=True, drop_last=recipe.drop_last, crop_padding=recipe.crop_padding, flip=recipe.flip,
              normalize=(mean, std), seed=seed, rank=rank, world_size=world_size,
              augment=Augmentation.from_recipe(recipe, data.train.num_classes))
    if data.path == "stream":
        return StreamingLoader(data.train, batch_size, device, workers=data.workers, **kw)
    return DeviceLoader(data.train, batch_size, device, transform=data.transform, **kw)
