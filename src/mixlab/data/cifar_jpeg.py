"""The lossy CIFAR-10 copy ("cifar10-jpeg"): JPEG files in an npz archive, decoded once and cached as .npy.

Archive (shared/data/README.md): `jpeg_bytes` uint8 [total] (the JPEG files concatenated), `offsets` int64
[N + 1] (image i is jpeg_bytes[offsets[i]:offsets[i+1]]), `labels` int64 [N], `paths` str [N]. The JPEGs
are quality ≈ 75 with 4:2:0 chroma subsampling, so these are *not* the original CIFAR-10 pixels.
Decoding is Pillow's `Image.open(...).convert("RGB")`; the decoded [N, 3, 32, 32] uint8 array is cached
under a name holding the archive's sha256, so a changed archive never reuses a stale cache.
"""
import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_write, file_sha256




def _open_archive(path, expected_count):
    try:
        with np.load(path, allow_pickle=False) as z:
            jpeg, offsets, labels = z["jpeg_bytes"], z["offsets"], z["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable cifar10-jpeg archive ({type(e).__name__}: {e})") from None
    n = len(labels)
    if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(jpeg) or np.any(np.diff(offsets) <= 0):
        raise ValueError(f"{path}: 'offsets' do not partition 'jpeg_bytes' into {n} images")
    if expected_count is not None and n != expected_count:
        raise ValueError(f"{path}: holds {n} images, expected {expected_count}")
    return jpeg, offsets, labels.astype(np.int64)


def _decode(path, jpeg, offsets, indices):
    from PIL import Image

    data = jpeg.tobytes()
    out = np.empty((len(indices), 3, 32, 32), dtype=np.uint8)
    for row, i in enumerate(indices):
        try:
            pixels = np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]])).convert("RGB"))
        except Exception as e:
            raise ValueError(f"{path}: image {i} is not a decodable JPEG ({e})") from None
        if pixels.shape != (32, 32, 3):
            raise ValueError(f"{path}: image {i} decodes to {pixels.shape}, expected (32, 32, 3)")
        out[row] = pixels.transpose(2, 0, 1)
    return out


def read_cifar10_jpeg(path, cache_dir, indices=None, expected_sha256=None, expected_count=None):
    """-> (images uint8 [n, 3, 32, 32], labels int64 [n], note). `indices` decodes only those images (no cache);
    otherwise the whole split is decoded once and cached in `cache_dir`."""
    path = Path(path)
    sha = file_sha256(path)
    if expected_sha256 and sha != expected_sha256:
        raise ValueError(f"{path}: sha256 is {sha}, expected {expected_sha256}; the file is corrupt or not the "
                         "shared cifar10-jpeg archive")
    cache = Path(cache_dir) / "cifar10-jpeg" / f"{path.stem}-{sha[:16]}.npy"
    if cache.exists():
        images = np.load(cache, mmap_mode="r", allow_pickle=False)
        _, _, labels = _open_archive(path, expected_count)
        if images.shape == (len(labels), 3, 32, 32) and images.dtype == np.uint8:
            if indices is not None:
                images, labels = images[np.asarray(indices)], labels[np.asarray(indices)]
            return torch.from_numpy(np.array(images)), torch.from_numpy(labels), f"decoded cache {cache}"
    jpeg, offsets, labels = _open_archive(path, expected_count)
    if indices is not None:
        indices = np.asarray(indices)
        return (torch.from_numpy(_decode(path, jpeg, offsets, indices)), torch.from_numpy(labels[indices]),
                "decoded subset")
    images = _decode(path, jpeg, offsets, range(len(labels)))
    # atomic: concurrent runs never see half a file
    atomic_write(cache, lambda tmp: np.save(tmp, images), suffix=".npy")
    return torch.from_numpy(images), torch.from_numpy(labels), f"decoded and cached at {cache}"


def archive_labels(path, expected_count=None):
    """The labels of an archive without decoding any image (enough to pick a stratified subset)."""
    return torch.from_numpy(_open_archive(path, expected_count)[2])
