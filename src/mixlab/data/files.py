"""Datasets held as image files: the index (paths, labels, header sizes and modes), decoding at the run's
image size, and the statistics used for normalisation.

An ImageFolder and a file list (filelist.py) both become a `FileIndex`. Only image headers are read to build
it (Pillow opens a file lazily), a few at a time in threads, so a folder of any size is indexed without
decoding it. A `FileDataset` is an index plus the run's `ImageTransform`: `item(i)` decodes one file and
applies the eval transform; `batches(indices)` does the same in torch DataLoader workers. The in-memory path
stacks those batches into an `ImageDataset`; the streaming path (stream.py) decodes per epoch instead.

Unreadable files are refused, never skipped: a file whose header Pillow cannot read stops the run before it
starts with one line naming it; a file that fails later, while being decoded, stops the run with one line
naming it (the last complete epoch stays resumable once the file is fixed or removed). Skipping would change
the dataset, and with it the batches of every later epoch, silently.

Mean/std (design.md "Dataset"): per-channel statistics of the train split at the run's eval transform, over
every image, or over a class-stratified sample of `STATS_LIMIT` images (seed 0) when there are more.
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..fileio import first_line
from .images import GRAY_MODES, open_image
from .transforms import ImageTransform, pil_to_tensor

STATS_LIMIT = 10_000
STATS_CHUNK = 256
SCAN_THREADS = 16


@dataclass
class FileIndex:
    """Image files with their labels, and what their headers say: size (h, w) and grayscale or not."""
    paths: list
    labels: torch.Tensor
    classes: list
    heights: np.ndarray
    widths: np.ndarray
    gray: np.ndarray
    source: str

    def __len__(self):
        return len(self.paths)

    @property
    def channels(self):
        """1 when every image is grayscale, else 3 (one colour image makes the whole dataset RGB)."""
        return 1 if bool(self.gray.all()) else 3

    def sizes(self):
        """The distinct (h, w) of the images, sorted."""
        return sorted(set(zip(self.heights.tolist(), self.widths.tolist())))

    def fingerprint(self):
        """A digest of the paths, labels and header sizes: a changed dataset never reuses a cached result."""
        digest = hashlib.sha256()
        for p, y, h, w in zip(self.paths, self.labels.tolist(), self.heights.tolist(), self.widths.tolist()):
            digest.update(f"{p}\0{y}\0{h}\0{w}\n".encode())
        return digest.hexdigest()


def _header(path):
    """(h, w, grayscale) from the header alone, or the reason it cannot be read."""
    import stat
    from PIL import Image
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):   # a FIFO would block Image.open forever, a device could read without end
            return "not a regular file" + (" (a named pipe)" if stat.S_ISFIFO(mode) else "")
        with Image.open(path) as img:
            w, h = img.size
            return h, w, img.mode in GRAY_MODES
    except Exception as e:   # noqa: BLE001 (Pillow raises many types for broken files; each becomes a reason)
        return first_line(e)


def index_files(samples, classes, source, where):
    """A `FileIndex` of [(path, label)]; refuses (one line) when any header cannot be read."""
    paths = [str(p) for p, _ in samples]
    with ThreadPoolExecutor(max_workers=min(SCAN_THREADS, max(1, len(paths)))) as pool:
        headers = list(pool.map(_header, paths, chunksize=64))
    bad = [(p, h) for p, h in zip(paths, headers) if isinstance(h, str)]
    if bad:
        raise ValueError(f"{len(bad)} unreadable image(s) in {where}, e.g. {bad[0][0]}: {bad[0][1]}; remove or "
                         f"fix them (unreadable files are refused, not skipped)")
    arr = np.asarray(headers, dtype=np.int64).reshape(-1, 3)
    return FileIndex(paths, torch.tensor([y for _, y in samples], dtype=torch.int64), list(classes),
                     arr[:, 0], arr[:, 1], arr[:, 2].astype(bool), source)


class DecodeError(ValueError):
    """A file that failed to decode, raised with one line naming it."""


@dataclass
class FileDataset:
    """A split held as files, decoded on demand at `transform` (see the module docstring).

    `image_size` is (C, S, S) at the transform's size, or the images' own (uniform) size when it has none.
    """
    index: FileIndex = field(repr=False)
    transform: ImageTransform
    mean: tuple
    std: tuple
    name: str
    source: str = ""
    split: str = "train"
    lossy: bool = False
    channels: int = None               # the train split's (a test split is read as its train split is)
    rows: torch.Tensor = field(default=None, repr=False)   # the entries of `index` this split holds
    workers: int = field(default=0, repr=False)              # DataLoader processes for `batches`
    out_size: tuple = field(default=None, init=False)

    def __post_init__(self):
        if self.rows is None:
            self.rows = torch.arange(len(self.index))
        self.channels = self.channels or self.index.channels
        if self.transform.img_size is None:
            sizes = self.index.sizes()
            if len(sizes) != 1:
                raise ValueError(f"{self.index.source}: images differ in size ({_sizes_text(sizes)}); give an "
                                 f"image size (--img-size N) to resize them")
            self.out_size = sizes[0]
        else:
            self.out_size = (self.transform.img_size, self.transform.img_size)
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)

    def __len__(self):
        return len(self.rows)

    @property
    def labels(self):
        return self.index.labels[self.rows]

    @property
    def classes(self):
        return self.index.classes

    @property
    def num_classes(self):
        return len(self.index.classes)

    @property
    def image_size(self):
        return (self.channels, *self.out_size)

    def path(self, i):
        return self.index.paths[int(self.rows[i])]

    def open(self, i):
        """Sample i decoded (mode "L" or "RGB", the dataset's channels) at its own size."""
        path = self.path(i)
        try:
            return open_image(path, self.channels)
        except Exception as e:   # noqa: BLE001 (any decoder failure is this file's problem, said in one line)
            reason = first_line(e)
            raise DecodeError(f"unreadable image {path}: {reason} (fix or remove it, then resume the run)") from None

    def item(self, i):
        """Sample i at the eval transform: uint8 [C, S, S]."""
        return pil_to_tensor(self.transform.eval_pil(self.open(i)))

    def take(self, indices, note=""):
        source = f"{self.source}; {note}" if note else self.source
        return replace(self, rows=self.rows[torch.as_tensor(indices, dtype=torch.int64)], source=source)

    def batches(self, indices, batch_size, workers=None):
        """uint8 batches [b, C, S, S] of samples `indices`, in order, at the eval transform, decoded by
        `workers` DataLoader processes (None: the dataset's `workers`)."""
        workers = self.workers if workers is None else workers
        indices = torch.as_tensor(indices, dtype=torch.int64).tolist()
        chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        yield from (x for x, _ in decode_batches(_EvalItems(self), chunks, workers))

    def to_memory(self, workers=None):
        """The whole split decoded at the eval transform, as an `ImageDataset`."""
        from .dataset import ImageDataset
        images = torch.empty((len(self), *self.image_size), dtype=torch.uint8)
        start = 0
        for x in self.batches(torch.arange(len(self)), 256, workers):
            images[start:start + len(x)] = x
            start += len(x)
        return ImageDataset(images=images, labels=self.labels.clone(), classes=list(self.classes), mean=self.mean,
                            std=self.std, name=self.name, lossy=self.lossy, source=self.source, split=self.split)


class _EvalItems(torch.utils.data.Dataset):
    """Dataset view for DataLoader workers: item i -> (eval-transformed uint8 image, label) or the error."""

    def __init__(self, fds):
        self.fds = fds
        self.labels = fds.labels.tolist()

    def __len__(self):
        return len(self.fds)

    def __getitem__(self, i):
        try:
            return self.fds.item(i), self.labels[i]
        except DecodeError as e:
            return None, str(e)


def collate_or_error(items):
    """Stack (image, label) pairs; the first decoding error instead, as a string, for the main process."""
    for x, y in items:
        if x is None:
            return y
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


def decode_batches(dataset, batches, workers=0, pin_memory=False, persistent=False):
    """Iterate (x, y) for each list of dataset items in `batches`, decoded by `workers` DataLoader processes
    (0: in this process), in order; a decoding failure is raised here as one line."""
    loader = make_loader(dataset, batches, workers, pin_memory, persistent)
    for batch in loader:
        if isinstance(batch, str):
            raise DecodeError(batch)
        yield batch


def die_with_parent(*_):
    """Linux: have the kernel SIGKILL this process when its parent dies (PR_SET_PDEATHSIG).

    A DataLoader worker is forked from the training process and so shares its open files, the run
    directory's lock among them; after a `kill -9` of the trainer, a worker living on until torch's watchdog
    notices (seconds) would keep the lock and refuse an immediate `--resume`. Elsewhere: a no-op.
    """
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def make_loader(dataset, batch_sampler, workers=0, pin_memory=False, persistent=False):
    """A DataLoader over lists of items. Its own generator: a DataLoader draws its workers' base seed when an
    iterator starts, and drawing it from the global RNG would shift the run's dropout by whether and when
    workers started (our items carry all their randomness, so the base seed is never used)."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                       collate_fn=collate_or_error, pin_memory=pin_memory,
                                       persistent_workers=persistent and workers > 0,
                                       generator=torch.Generator().manual_seed(0),
                                       worker_init_fn=die_with_parent if workers > 0 else None)


def _sizes_text(sizes, shown=3):
    text = ", ".join(f"{w}x{h}" for h, w in sizes[:shown])
    return text + (f" and {len(sizes) - shown} more" if len(sizes) > shown else "")


def stats_over(chunks, channels):
    """Per-channel mean and std, in [0, 1] units, of uint8 image chunks [b, C, H, W] (float64 sums)."""
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for chunk in chunks:
        x = chunk.to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.clamp_min(1e-3).tolist())


def file_stats(fds, cache_dir=None, workers=0):
    """Mean/std of a train split (`FileDataset`) at its eval transform (module docstring), cached on disk."""
    from .dataset import stratified_indices
    t = fds.transform
    key = hashlib.sha256(f"{fds.index.fingerprint()}|{fds.out_size}|{t.crop_pct}|{t.interpolation}|"
                         f"{fds.channels}|{STATS_LIMIT}".encode()).hexdigest()[:24]
    return _cached_stats(fds, key, cache_dir, workers, stratified_indices)


_STATS = {}   # key -> (mean, std), for the train and test loads of one run


def _cached_stats(fds, key, cache_dir, workers, stratified_indices):
    if key in _STATS:
        return _STATS[key]
    path = cache_dir / "image-stats" / f"{key}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text())
            _STATS[key] = tuple(saved["mean"]), tuple(saved["std"])
            return _STATS[key]
        except (OSError, ValueError, KeyError):
            pass   # a damaged cache entry is recomputed
    sample = torch.arange(len(fds)) if len(fds) <= STATS_LIMIT else \
        stratified_indices(fds.labels, STATS_LIMIT, 0, fds.num_classes)
    stats = stats_over(fds.batches(sample, STATS_CHUNK, workers), fds.channels)
    _STATS[key] = stats
    if path is not None:
        from ..fileio import write_json
        try:
            write_json(path, {"mean": list(stats[0]), "std": list(stats[1]), "images": len(sample)})
        except OSError:
            pass   # a read-only cache only costs the recomputation next time
    return stats
