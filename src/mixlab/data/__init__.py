"""Datasets as uint8 tensors (IDX, CIFAR pickles, lossy CIFAR-10 JPEG, ImageFolder, file lists, synthetic) or
as files decoded on demand; their lookup and verification; the run's image transform; and the two loaders that
share one epoch plan: device-resident (augments on the training device) and streaming (DataLoader workers)."""
from .dataset import ImageDataset, stratified_indices
from .files import FileDataset
from .load import ensure_default_dataset, load_dataset, resolve_name
from .loader import DeviceLoader, crop_flip
from .sources import DATASETS, cache_dir
from .stream import StreamingLoader
from .transforms import ImageTransform

__all__ = ["DATASETS", "DeviceLoader", "FileDataset", "ImageDataset", "ImageTransform", "StreamingLoader",
           "cache_dir", "crop_flip", "ensure_default_dataset", "load_dataset", "resolve_name", "stratified_indices"]
