"""Datasets as uint8 tensors (IDX, CIFAR pickles, lossy CIFAR-10 JPEG, ImageFolder, synthetic), their
lookup and verification, and the device-resident loader that augments on the training device."""
from .dataset import ImageDataset, stratified_indices
from .load import ensure_default_dataset, load_dataset, resolve_name
from .loader import DeviceLoader, crop_flip
from .sources import DATASETS, cache_dir

__all__ = ["DATASETS", "DeviceLoader", "ImageDataset", "cache_dir", "crop_flip", "ensure_default_dataset",
           "load_dataset", "resolve_name", "stratified_indices"]
