"""Images in torchvision's ImageFolder layout: `root/<class>/<image>`, optionally split as `root/train/...`
and `root/test/...` (or `val/`). Class ids follow sorted folder names (torchvision's `find_classes`).

All images must share one size; grayscale folders (every image grayscale) give C = 1, others are read as
RGB. A folder needs at least two classes, and a test split may not hold a class the train split lacks. Mean/std
are computed over the train split's pixels.
"""
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

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


def read_image_folder(folder, classes=None):
    """-> (images uint8 [N, C, H, W], labels int64 [N], classes).

    `classes`: the class list of the train split; a test split must not hold a class it lacks (its labels
    are the train split's ids). Files are decoded one at a time and closed at once.
    """
    from PIL import UnidentifiedImageError
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    from .images import decode

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
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    if not samples:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    arrays, grays = [], []
    for p, _ in samples:
        try:
            arr, gray = decode(p)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise ValueError(f"unreadable image {p}: {e}") from None
        if arrays and arr.shape[1:] != arrays[0].shape[1:]:
            h, w = arrays[0].shape[1:]
            raise ValueError(f"{p}: size {arr.shape[2]}x{arr.shape[1]} differs from {w}x{h}; "
                             "resize the folder to one image size first")
        arrays.append(arr)
        grays.append(gray)
    if not all(grays):   # any colour image makes the whole folder RGB
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    images = np.stack(arrays)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return torch.from_numpy(images), labels, list(classes)


def channel_stats(images):
    """Per-channel mean and std of uint8 images in [0, 1] units (float64 accumulation, chunked)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.clamp_min(1e-3).tolist())


@lru_cache(maxsize=8)
def train_stats(root, mtime):
    """Mean/std of the train split of an image folder (cached per folder and modification time)."""
    folder, _ = split_dir(root, "train")
    return channel_stats(read_image_folder(folder)[0])
