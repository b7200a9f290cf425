"""Where each built-in dataset lives on disk (the files themselves are described in `spec.py`).

Search order (design.md "Data sources, in order"): the `data_dir` argument, `$MIXLAB_DATA`, the cache
(`$MIXLAB_CACHE` or `~/.cache/mixlab`), then `/usr/share/datasets/fashion-mnist` (Debian package
`dataset-fashion-mnist`). Inside a root each dataset is accepted in the flat layout of shared/data
(`fashion-mnist/*.gz`, `mnist/*.gz`, `cifar10-jpg/*.npz`), in torchvision's layout (`FashionMNIST/raw/`,
`MNIST/raw/`, `cifar-10-batches-py/`, `cifar-100-python/`), or as the root itself when it is that folder.
A `data_dir` that was asked for but does not exist is an error, never silently skipped.
"""
import os
from pathlib import Path

from .spec import BUILTIN, SYNTHETIC_DESCRIPTION

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASETS = {name: spec.description for name, spec in BUILTIN.items()}
DATASETS["synthetic"] = SYNTHETIC_DESCRIPTION


def cache_dir():
    return Path(os.environ.get("MIXLAB_CACHE") or Path.home() / ".cache" / "mixlab").expanduser()


def roots(data_dir=None):
    """The search roots, in order, without duplicates. A given `data_dir` must exist."""
    if data_dir:
        given = Path(data_dir).expanduser()
        if not given.is_dir():
            raise FileNotFoundError(f"--data-dir {data_dir} is not a folder")
    found = []
    for r in (data_dir, os.environ.get("MIXLAB_DATA"), cache_dir()):
        if r and Path(r).expanduser() not in found:
            found.append(Path(r).expanduser())
    return found


def candidate_folders(name, data_dir=None):
    """Every folder that could hold built-in dataset `name`, in search order."""
    spec = BUILTIN[name]
    out = []
    for root in roots(data_dir):
        if root.name.lower() in spec.self_names:
            out.append(root)
        out.extend(root / sub for sub in spec.folders)
    if name == "fashion-mnist":
        out.append(DEBIAN_FASHION_MNIST)
    return list(dict.fromkeys(out))


def required_files(name, folder, split):
    """The files `split` of `name` needs in `folder` (IDX: the .gz or the plain file, plain preferred)."""
    folder, spec = Path(folder), BUILTIN[name]
    if spec.reader == "idx":
        return [folder / f if (folder / f).exists() else folder / f"{f}.gz" for f in spec.files[split]]
    return [folder / f for f in spec.files[split]]


def find_folder(name, split, data_dir=None):
    """(folder, looked): the first candidate holding every file of `split`, or None, and what was searched."""
    looked = candidate_folders(name, data_dir)
    for folder in looked:
        if all(f.is_file() for f in required_files(name, folder, split)):
            return folder, looked
    return None, looked
