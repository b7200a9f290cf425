"""Images in torchvision's ImageFolder layout: `root/<class>/<image>`, optionally split as `root/train/...`
and `root/test/...` (or `val/`). Class ids follow sorted folder names (torchvision's `find_classes`).

Images may be of any size and mode: grayscale folders (every image grayscale) give C = 1, others are read as
RGB, and the run's `ImageTransform` brings them to one size (files.py). A folder needs at least two classes,
and a test split may not hold a class the train split lacks.
"""
from pathlib import Path

import torch

from .files import index_files, stats_over

_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val", "valid", "validation"),
               "val": ("val", "valid", "validation", "test")}


def split_dir(root, split):
    """(folder holding class folders for `split`, note); a root without split folders serves every split."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if any((root / d).is_dir() for names in _SPLIT_DIRS.values() for d in names):
        for d in _SPLIT_DIRS.get(split, (split,)):
            if (root / d).is_dir():
                return root / d, ""
        raise FileNotFoundError(f"image folder {root} has no {split!r} split folder "
                                f"(looked for {', '.join(_SPLIT_DIRS.get(split, (split,)))})")
    return root, "no split folders: every split is the same images"


def read_image_folder_classes(folder):
    """The sorted class-folder names of an ImageFolder split (torchvision's `find_classes`)."""
    from torchvision.datasets.folder import find_classes
    try:
        return find_classes(str(folder))[0]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder}: not an ImageFolder layout ({e})") from None


def folder_index(folder, classes=None):
    """The `FileIndex` of one ImageFolder split (headers only).

    `classes`: the class list of the train split; a test split must not hold a class it lacks (its labels
    are the train split's ids).
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    folder = Path(folder)
    found = read_image_folder_classes(folder)
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise ValueError(f"{folder}: an ImageFolder needs at least two class folders to classify, found "
                             f"{len(classes)} ({', '.join(classes) or 'none'})")
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise ValueError(f"{folder}: class folder(s) {', '.join(extra)} are not in the train split "
                             f"({', '.join(classes)})")
    class_to_idx = {c: i for i, c in enumerate(classes) if c in found}
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    return index_files(samples, classes, f"{folder} (ImageFolder)", folder)


def channel_stats(images):
    """Per-channel mean and std of uint8 images [N, C, H, W] in [0, 1] units (float64 sums, 4096 at a time)."""
    return stats_over(images.split(4096), images.shape[1])
