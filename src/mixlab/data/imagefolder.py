"""Images in torchvision's ImageFolder layout: `root/<class>/<image>`, optionally split as `root/train/...`
and `root/test/...` (or `val/`). Class ids follow sorted folder names (torchvision's `find_classes`).

Images may be of any size and mode: grayscale folders (every image grayscale) give C = 1, others are read as
RGB, and the run's `ImageTransform` brings them to one size (files.py). A folder needs at least two classes,
and a test split may not hold a class the train split lacks.

Symbolic links are followed, but each directory only once, by (device, inode): a link back to a folder already
indexed (`cat/loop -> ..`, `cat/self -> .`, a second link to the same folder) is not entered again, and one
`[mixlab.data] warning:` line on stderr says how many were passed over. Without that rule the same images would
be indexed many times over (torchvision's `make_dataset` follows links blindly) and a link to itself would
never end. The split folder and every class folder count as indexed from the start, so a link from one class
to another never relabels the other class's images.
"""
import os
import sys
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
    from torchvision.datasets.folder import IMG_EXTENSIONS

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
    samples, repeats = _walk_classes(folder, class_to_idx, IMG_EXTENSIONS)
    if repeats:
        shown = ", ".join(str(Path(r).relative_to(folder)) for r in repeats[:3]) + (", …" if len(repeats) > 3 else "")
        print(f"[mixlab.data] warning: {folder}: {len(repeats)} symlinked folder(s) lead to folders already indexed "
              f"and were not followed again ({shown}); each folder is read once", file=sys.stderr, flush=True)
    if not samples:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    return index_files(samples, classes, f"{folder} (ImageFolder)", folder)


def _dir_key(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _walk_classes(folder, class_to_idx, extensions):
    """([(path, class id)], [symlinked folders not followed]) in torchvision `make_dataset`'s order (classes
    sorted, then each class's folders by path, files by name), each directory entered once (module docstring)."""
    seen = {_dir_key(folder)}
    roots = {c: os.path.join(folder, c) for c in sorted(class_to_idx) if os.path.isdir(os.path.join(folder, c))}
    for root in roots.values():
        seen.add(_dir_key(root))
    samples, repeats = [], []
    for name, root in roots.items():
        walked = []
        for here, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()   # which of two links to one folder is kept must not depend on listing order
            keep = []
            for d in dirs:
                try:
                    key = _dir_key(os.path.join(here, d))
                except OSError:   # a dangling link: os.walk would not enter it either
                    continue
                if key in seen:
                    repeats.append(os.path.join(here, d))
                else:
                    seen.add(key)
                    keep.append(d)
            dirs[:] = keep
            walked.append((here, files))
        for here, files in sorted(walked):
            samples.extend((os.path.join(here, f), class_to_idx[name]) for f in sorted(files)
                           if f.lower().endswith(extensions))
    return samples, repeats


def channel_stats(images):
    """Per-channel mean and std of uint8 images [N, C, H, W] in [0, 1] units (float64 sums, 4096 at a time)."""
    return stats_over(images.split(4096), images.shape[1])
