"""CIFAR-10 / CIFAR-100 readers for the official python-pickle layout, through a restricted unpickler.

Layout (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html): `cifar-10-batches-py/data_batch_1..5`
and `test_batch`, each a pickled dict with b'data' uint8 [N, 3072] (row = R plane, G plane, B plane of a
32×32 image) and b'labels'; `batches.meta` has b'label_names'. `cifar-100-python/train`, `test` hold
b'fine_labels' and `meta` b'fine_label_names'. Pickle runs code on load, so `SafeUnpickler` resolves only
plain containers and numpy array reconstruction; anything else is refused.
"""
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from .spec import CIFAR10_CLASSES

_np_core = getattr(np, "_core", None) or np.core   # numpy 2 renamed numpy.core to numpy._core
_SAFE_BUILTINS = {"dict", "list", "tuple", "bytes", "bytearray", "str", "int", "float", "bool", "set"}
_SAFE_GLOBALS = {
    "_reconstruct": _np_core.multiarray._reconstruct,   # how numpy pickles an ndarray
    "scalar": _np_core.multiarray.scalar,                # ... a numpy scalar
    "_frombuffer": getattr(_np_core.numeric, "_frombuffer", None),   # ... an array with pickle protocol 5
    "ndarray": np.ndarray,
    "dtype": np.dtype,
}
_NUMPY_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric"}


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that can build dicts, lists, strings, bytes, numbers and numpy arrays, and nothing else."""

    def find_class(self, module, name):
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "_codecs" and name == "encode":   # Python 3 writes bytes this way at protocol <= 2
            import _codecs
            return _codecs.encode
        if module in _NUMPY_MODULES and _SAFE_GLOBALS.get(name) is not None:
            return _SAFE_GLOBALS[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data and numpy arrays "
                                     "are allowed in a dataset pickle")


def safe_load(path):
    """Unpickle `path` with `SafeUnpickler` (py2 strings stay bytes); any failure is a one-line ValueError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as e:   # truncated, corrupt or malicious pickles all land here
        raise ValueError(f"{path}: unreadable or unsafe pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path, label_key):
    """One CIFAR batch file -> (uint8 [N, 3, 32, 32], int64 [N])."""
    batch = safe_load(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise ValueError(f"{path}: 'data' must be a uint8 array [N, 3072], got {type(data).__name__} {shape}")
    if labels is None or len(labels) != len(data):
        raise ValueError(f"{path}: {label_key!r} must hold {len(data)} labels, got "
                         f"{None if labels is None else len(labels)}")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    return images, torch.as_tensor(np.asarray(labels, dtype=np.int64))



def read_names(path, key, count):
    """The `count` class names listed under `key` in a CIFAR meta file."""
    names = safe_load(path).get(key)
    if not isinstance(names, list) or len(names) != count:
        raise ValueError(f"{path}: {key!r} must list {count} class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar(folder, split, variant):
    """Read `split` ('train' / 'test') of CIFAR `variant` (10 or 100) -> (images, labels, class names)."""
    folder = Path(folder)
    if variant == 10:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key, meta, names_key = "labels", "batches.meta", "label_names"
    else:
        files, label_key, meta, names_key = [split], "fine_labels", "meta", "fine_label_names"
    parts = [read_batch(folder / f, label_key) for f in files]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    if variant == 10 and not (folder / meta).exists():
        classes = list(CIFAR10_CLASSES)   # the names are fixed; the meta file only repeats them
    else:
        classes = read_names(folder / meta, names_key, variant)
    return images, labels, classes
