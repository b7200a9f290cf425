"""Datasets as uint8 tensors (IDX, CIFAR pickles, lossy CIFAR-10 JPEG, ImageFolder, file lists, synthetic) or
as files decoded on demand, through one source per kind (load.py: `data_source(name).describe()` / `.load(split)`);
their lookup (sources.py), acquisition (acquire.py), readers (readers.py) and verification; the run's image transform; and the two loaders that
share one epoch plan: device-resident (augments on the training device) and streaming (DataLoader workers).

The names below are imported on first use (PEP 562), so `import mixlab` (whose models read
`mixlab.data.normalization`) does not pay for the loaders and readers."""
import importlib

_EXPORTS = {
    "ImageDataset": ".dataset", "stratified_indices": ".dataset",
    "FileDataset": ".files",
    "ensure_default_dataset": ".acquire",
    "DataFacts": ".load", "DataSource": ".load", "data_source": ".load", "load_dataset": ".load",
    "resolve_name": ".load",
    "DeviceLoader": ".loader", "crop_flip": ".loader",
    "DATASETS": ".sources", "cache_dir": ".sources",
    "StreamingLoader": ".stream",
    "ImageTransform": ".transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
