"""Images in torchvision's ImageFolder layout: `root/<class>/<image>`, optionally split as `root/train/...`
and `root/test/...` (or `val/`). Class ids follow sorted folder names (torchvision's `find_classes`).

All images must share one size; grayscale folders (every image mode "L"/"1") give C = 1, others are read
as RGB. Mean/std are computed over the train split's pixels.
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


def read_image_folder(folder):
    """-> (images uint8 [N, C, H, W], labels int64 [N], classes)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    folder = Path(folder)
    try:
        classes, class_to_idx = find_classes(str(folder))
        samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder}: not an ImageFolder layout ({e})") from None
    if not samples:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    try:
        opened = [(Image.open(p), p) for p, _ in samples]
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"unreadable image in {folder}: {e}") from None
    gray = all(img.mode in ("L", "1") for img, _ in opened)
    size = opened[0][0].size
    channels = 1 if gray else 3
    images = np.empty((len(opened), channels, size[1], size[0]), dtype=np.uint8)
    for i, (img, p) in enumerate(opened):
        if img.size != size:
            raise ValueError(f"{p}: size {img.size[0]}x{img.size[1]} differs from {size[0]}x{size[1]}; "
                             "resize the folder to one image size first")
        try:
            pixels = np.asarray(img.convert("L" if gray else "RGB"))
        except OSError as e:
            raise ValueError(f"{p}: unreadable image ({e})") from None
        images[i] = pixels[None] if gray else pixels.transpose(2, 0, 1)
        img.close()
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return torch.from_numpy(images), labels, classes


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
