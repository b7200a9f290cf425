"""The readers of the built-in datasets' file formats, one per `DatasetSpec.reader`, in `READERS`.

A reader gets the dataset's spec, the split, the folder holding it (sources.py found it) and the subset asked
for, and returns a `Read`: the verified uint8 images [N, C, H, W], int64 labels, class names, a note for the
source line, and whether it already took the subset (cifar-jpeg picks it from the labels first, so that only
those images are decoded). A file that is not what its spec says raises a one-line ValueError naming it. A new
format is one function here and one entry in `READERS`.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import sources
from .spec import DatasetSpec


@dataclass
class Read:
    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    note: str = ""
    subset_done: bool = False


def read_idx_split(spec: DatasetSpec, split: str, folder: Path, subset: int | None, seed: int) -> Read:
    """IDX images and labels (MNIST layout), each checked against its sha256 and the split's count."""
    from .idx import read_idx

    expected = spec.counts[split]
    files = sources.required_files(spec.name, folder, split)
    h, w = spec.image_size[1:]
    images = read_idx(files[0], spec.sha256.get(files[0].name.removesuffix(".gz")))
    labels = read_idx(files[1], spec.sha256.get(files[1].name.removesuffix(".gz"))).to(torch.int64)
    if images.dim() != 3 or images.shape[1:] != (h, w) or len(images) != expected or len(labels) != expected:
        raise ValueError(f"{files[0]}: expected {expected} images of {h}x{w} and as many labels, got "
                         f"{tuple(images.shape)} and {tuple(labels.shape)}")
    return Read(images.unsqueeze(1), labels, list(spec.classes))


def read_cifar_pickle_split(spec: DatasetSpec, split: str, folder: Path, subset: int | None, seed: int) -> Read:
    """The official CIFAR-10/100 python pickles (class names from their meta file)."""
    from .cifar import read_cifar

    images, labels, classes = read_cifar(folder, split, spec.num_classes)
    if len(images) != spec.counts[split]:
        raise ValueError(f"{folder}: {split} split holds {len(images)} images, expected {spec.counts[split]}")
    return Read(images, labels, classes)


def read_cifar_jpeg_split(spec: DatasetSpec, split: str, folder: Path, subset: int | None, seed: int) -> Read:
    """The lossy CIFAR-10 JPEG archive; a subset is chosen from the labels first so only it is decoded."""
    from .cifar_jpeg import archive_labels, read_cifar10_jpeg
    from .dataset import stratified_indices

    expected = spec.counts[split]
    archive = sources.required_files(spec.name, folder, split)[0]
    indices = None
    if subset is not None:
        indices = stratified_indices(archive_labels(archive, expected), subset, seed, spec.num_classes)
    images, labels, note = read_cifar10_jpeg(archive, sources.cache_dir(), indices, spec.sha256.get(archive.name),
                                             expected)
    return Read(images, labels, list(spec.classes), f"lossy JPEG q75 4:2:0 copy of CIFAR-10, {note}",
                indices is not None)


READERS: dict[str, Callable[[DatasetSpec, str, Path, int | None, int], Read]] = {
    "idx": read_idx_split,
    "cifar-pickle": read_cifar_pickle_split,
    "cifar-jpeg": read_cifar_jpeg_split,
}
