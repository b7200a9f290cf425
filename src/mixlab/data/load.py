"""The data sources: one per kind of dataset, each able to `describe()` itself without reading an image and to
`load(split)` it; `data_source(name)` picks the source a name means, and `load_dataset(name, split)` loads
through it.

kind        named by                                        source
builtin     an entry of spec.BUILTIN (aliases accepted)     `BuiltinSource`: the folder sources.py finds (or
                                                            acquire.py fetches), read by readers.READERS[spec.reader]
synthetic   synthetic[:NxCxHxW[:K]]                         `SyntheticSource`: generated (synthetic.py)
files       an ImageFolder directory, imagefolder:PATH, a   `FileSource`: indexed from the image headers
            file list (.csv/.tsv/.txt), filelist:PATH       (imagefolder.py, filelist.py, files.py), decoded whole
                                                            into memory or per epoch (`stream`)

Verification of the built-in datasets: IDX header and exact length, sha256 of the uncompressed IDX content,
CIFAR pickle structure, archive sha256 for cifar10-jpeg, per-split counts, and (in `ImageDataset`) dtypes,
shapes and label range. Anything off raises a one-line ValueError naming the file.
"""
import difflib
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import sources
from .acquire import SPLITS, locate
from .dataset import ImageDataset, stratified_indices
from .filelist import is_file_list, read_file_list
from .files import FileDataset, file_stats, index_files
from .imagefolder import channel_stats, folder_index, split_dir
from .readers import READERS
from .spec import ALIASES, BUILTIN
from .synthetic import make_synthetic, parse_spec
from .transforms import ImageTransform, pil_to_tensor, tensor_to_pil

def _log(verbose, message):
    if verbose:
        print(f"[mixlab.data] {message}", file=sys.stderr, flush=True)


def resolve_name(name):
    """Canonical dataset name, ('imagefolder', path) for a folder, ('filelist', path) for a list of files
    (filelist.py), or a ValueError listing the known names."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if name.startswith("imagefolder:"):
        return "imagefolder", Path(name[len("imagefolder:"):]).expanduser()
    if name.startswith("filelist:"):
        return "filelist", Path(name[len("filelist:"):]).expanduser()
    key = ALIASES.get(name.lower(), name.lower())
    if key in sources.DATASETS or key.startswith("synthetic:"):
        return key, None
    if Path(name).expanduser().is_dir():
        return "imagefolder", Path(name).expanduser()
    if is_file_list(Path(name).expanduser()):
        return "filelist", Path(name).expanduser()
    close = difflib.get_close_matches(key, list(sources.DATASETS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(sources.DATASETS)}, an ImageFolder "
                     f"directory, imagefolder:PATH or a file list (.csv, .tsv, .txt){hint}")


def _signature(key, path, split):
    """What a cached file index depends on: the split folder and its class folders' modification times (a
    file added or removed changes its folder's), or the list file's (and its test companion's) size and time."""
    if key == "filelist":
        files = [Path(path)] + sorted(Path(path).parent.glob("*" + Path(path).suffix))
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())
    folder, _ = split_dir(path, split)
    return tuple(sorted((e.path, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_dir())) + \
        ((str(folder), folder.stat().st_mtime_ns),)


_INDEXES = {}


def file_index(key, path, split):
    """(FileIndex, note) of `split` of an ImageFolder or file list, cached per process while unchanged."""
    cache_key = (key, str(Path(path).resolve()), split)
    signature = _signature(key, path, split)
    hit = _INDEXES.get(cache_key)
    if hit is not None and hit[0] == signature:
        return hit[1]
    if key == "filelist":
        train_classes = None
        samples, classes, source = read_file_list(path, split)
        result = index_files(samples, classes, source, path), ""
    else:
        folder, note = split_dir(path, split)
        if split != "train" and note:   # one folder serves every split: its train index, read once
            index = replace(file_index(key, path, "train")[0])
        else:
            train_classes = file_index(key, path, "train")[0].classes if split != "train" else None
            index = folder_index(folder, classes=train_classes)
        index.source = f"{folder} (ImageFolder{'; ' + note if note else ''})"
        result = index, note
    _INDEXES[cache_key] = (signature, result)
    return result


def _resize_in_memory(images, transform):
    """uint8 [N, C, H, W] -> [N, C, S, S] through the eval transform, one image at a time (PIL, as the files)."""
    out = torch.empty((len(images), images.shape[1], transform.img_size, transform.img_size), dtype=torch.uint8)
    for i, img in enumerate(images):
        out[i] = pil_to_tensor(transform.eval_pil(tensor_to_pil(img)))
    return out


def _describe_resize(transform, storage, sizes, when="once on load"):
    """One clause for the source line and the log: what the resize did, from which size(s)."""
    before = f"{sizes[0][1]}x{sizes[0][0]}" if len(sizes) == 1 else f"{len(sizes)} different sizes"
    what = (f"resized {before} -> {storage.img_size}x{storage.img_size} {when} (shorter side to "
            f"{storage.resize_size}, centre crop, {transform.interpolation})")
    return what + (f", the source of {transform.img_size}px random-resized crops" if storage is not transform else "")


@dataclass(frozen=True)
class DataFacts:
    """What a dataset is, known before any image is decoded (built-in: its spec; synthetic: its name; files:
    their headers)."""
    channels: int
    sizes: tuple[tuple[int, int], ...]    # the distinct (h, w) of its images over both splits, sorted
    counts: dict[str, int]                # split -> images
    num_classes: int
    classes: tuple[str, ...] = ()         # class names; empty where only the data files hold them (CIFAR-100)


class DataSource(ABC):
    """One kind of dataset (the module's table). `load` refuses, in one line, what the kind cannot do."""
    kind: str = ""
    streamable: bool = False      # its images are files that can be decoded per epoch (--data-path stream)
    fixed_splits: bool = True     # only 'train' and 'test' (image files: any split folder or list)

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def describe(self) -> DataFacts:
        """Channels, sizes, counts and classes of the dataset, read without decoding an image."""

    def load(self, split: str = "train", subset: int | None = None, seed: int = 0,
             transform: ImageTransform | None = None, stream: bool = False, workers: int = 0,
             verbose: bool = True):
        """`split` as an `ImageDataset` (uint8 images in memory), or with `stream` a `FileDataset` that decodes
        its files when asked; `subset` keeps a class-stratified N chosen with `seed`; `transform` (the run's
        `ImageTransform`) sets the image size (see `load_dataset`)."""
        transform = transform or ImageTransform()
        if stream and not self.streamable:
            raise ValueError(f"--data-path stream decodes image files (an ImageFolder or a file list); {self.name} "
                             f"is read whole into memory: use --data-path memory or auto")
        if self.fixed_splits and split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test' for {self.name}, got {split!r}")
        storage = transform.source() if transform.rrc and split == "train" and not stream else transform
        return self._load(split, subset, seed, transform, storage, stream, workers, verbose)

    @abstractmethod
    def _load(self, split, subset, seed, transform, storage, stream, workers, verbose):
        """The kind's own reading of `split`, after `load` checked what every kind refuses."""

    @staticmethod
    def _in_memory(ds, split, subset, seed, subset_done, total, transform, storage, verbose):
        """The shared end of a source read whole: the stratified subset (unless the reader took it), the resize
        to the run's image size, and the log line."""
        if subset is not None and not subset_done:
            indices = stratified_indices(ds.labels, subset, seed, ds.num_classes)
            if len(indices) < len(ds):
                ds = ds.take(indices, f"stratified subset of {len(indices)}/{len(ds)}, seed {seed}")
        elif subset_done:
            ds.source += f"; stratified subset of {len(ds)}/{total}, seed {seed}"
        _, h, w = ds.image_size
        if not storage.is_identity_for(h, w):
            what = _describe_resize(transform, storage, [(h, w)])
            ds = replace(ds, images=_resize_in_memory(ds.images, storage), source=f"{ds.source}; {what}",
                         out_size=(transform.img_size,) * 2 if storage is not transform else None)
            _log(verbose, f"{ds.name} {split}: {what}")
        _log(verbose, f"{ds.name} {split}: {len(ds)} images {'x'.join(map(str, ds.image_size))}, "
                      f"{ds.num_classes} classes from {ds.source}")
        return ds


class BuiltinSource(DataSource):
    """A dataset of spec.BUILTIN: found on disk (or acquired, `download`), read by its format's reader."""
    kind = "builtin"

    def __init__(self, name: str, data_dir=None, download: bool | None = None) -> None:
        super().__init__(name)
        self.spec, self.data_dir, self.download = BUILTIN[name], data_dir, download

    def describe(self) -> DataFacts:
        c, h, w = self.spec.image_size
        return DataFacts(c, ((h, w),), dict(self.spec.counts), self.spec.num_classes, tuple(self.spec.classes))

    def _load(self, split, subset, seed, transform, storage, stream, workers, verbose):
        spec = self.spec
        folder = locate(self.name, split, self.data_dir, self.download, verbose)
        read = READERS[spec.reader](spec, split, folder, subset, seed)
        ds = ImageDataset(images=read.images, labels=read.labels, classes=read.classes, mean=spec.mean,
                          std=spec.std, name=self.name, lossy=spec.lossy,
                          source=f"{folder}" + (f" ({read.note})" if read.note else ""), split=split)
        return self._in_memory(ds, split, subset, seed, read.subset_done, spec.counts[split], transform, storage,
                               verbose)


class SyntheticSource(DataSource):
    """Deterministic class-pattern images (synthetic.py); `options` num_samples, image_size=(C, H, W) and
    num_classes override the name's."""
    kind = "synthetic"

    def __init__(self, name: str, **options) -> None:
        super().__init__(name)
        n, c, h, w, k = parse_spec(name)
        n = options.pop("num_samples", n)
        c, h, w = options.pop("image_size", (c, h, w))
        k = options.pop("num_classes", k)
        if options:
            raise ValueError(f"unknown synthetic options {sorted(options)}: use num_samples, image_size, num_classes")
        self.shape = (n, c, h, w, k)

    def describe(self) -> DataFacts:
        n, c, h, w, k = self.shape
        return DataFacts(c, ((h, w),), {"train": n, "test": max(n // 5, k)}, k,
                         tuple(f"class{i}" for i in range(k)))

    def _load(self, split, subset, seed, transform, storage, stream, workers, verbose):
        n, c, h, w, k = self.shape
        images, labels = make_synthetic(split, n, c, h, w, k)
        mean, std = channel_stats(make_synthetic("train", n, c, h, w, k)[0] if split != "train" else images)
        ds = ImageDataset(images=images, labels=labels, classes=[f"class{i}" for i in range(k)], mean=mean, std=std,
                          name="synthetic", lossy=False, source=f"generated synthetic:{n}x{c}x{h}x{w}:{k}",
                          split=split)
        return self._in_memory(ds, split, subset, seed, False, len(ds), transform, storage, verbose)


class FileSource(DataSource):
    """An ImageFolder or a file list (`key` imagefolder | filelist): indexed from the image headers (cached
    while unchanged, `file_index`), normalised by the train split's statistics at the run's transform."""
    kind = "files"
    streamable = True
    fixed_splits = False

    def __init__(self, key: str, path: Path) -> None:
        super().__init__(key)
        self.key, self.path = key, Path(path)

    def describe(self) -> DataFacts:
        train, _ = file_index(self.key, self.path, "train")
        test, _ = file_index(self.key, self.path, "test")
        return DataFacts(train.channels, tuple(sorted(set(train.sizes()) | set(test.sizes()))),
                         {"train": len(train), "test": len(test)}, len(train.classes), tuple(train.classes))

    def _load(self, split, subset, seed, transform, storage, stream, workers, verbose):
        key, path = self.key, self.path
        index, note = file_index(key, path, split)
        train_index = index if split == "train" else file_index(key, path, "train")[0]
        channels = train_index.channels
        missing = sorted(set(index.classes) - {index.classes[y] for y in index.labels.unique().tolist()})
        if missing:
            _log(verbose, f"{index.source} has no images of class(es) {', '.join(missing)} of the train split")
        stats_of = FileDataset(train_index, transform, (0.0,) * channels, (1.0,) * channels, key, channels=channels)
        mean, std = file_stats(stats_of, sources.cache_dir(), workers)
        fds = FileDataset(index, storage, mean, std, key, source=index.source, split=split, channels=channels,
                          workers=workers)
        if subset is not None:
            indices = stratified_indices(fds.labels, subset, seed, fds.num_classes)
            if len(indices) < len(fds):
                fds = fds.take(indices, f"stratified subset of {len(indices)}/{len(fds)}, seed {seed}")
        sizes = index.sizes()
        if transform.img_size is not None and not (len(sizes) == 1 and storage.is_identity_for(*sizes[0])):
            fds.source += "; " + _describe_resize(transform, storage, sizes,
                                                  "per image as it is read" if stream else "once on load")
        if stream:
            _log(verbose, f"{key} {split}: {len(fds)} image files streamed at "
                          f"{'x'.join(map(str, fds.image_size))}, {fds.num_classes} classes from {fds.source}")
            return fds
        ds = fds.to_memory(workers)
        if storage is not transform:
            ds.out_size = (transform.img_size,) * 2
        _log(verbose, f"{key} {split}: {len(ds)} images {'x'.join(map(str, ds.image_size))}, "
                      f"{ds.num_classes} classes from {ds.source}")
        return ds


def data_source(name: str, data_dir=None, download: bool | None = None, **options) -> DataSource:
    """The source a dataset name means (the module's table); an unknown name is a one-line ValueError.
    `data_dir` and `download` apply to built-in datasets, `options` to synthetic ones."""
    key, path = resolve_name(name)
    if options and not key.startswith("synthetic"):
        raise ValueError(f"options {sorted(options)} only apply to the synthetic dataset")
    if path is not None:
        return FileSource(key, path)
    if key.startswith("synthetic"):
        return SyntheticSource(key, **options)
    return BuiltinSource(key, data_dir, download)


def load_dataset(name: str, split: str = "train", data_dir=None, subset: int | None = None, seed: int = 0,
                 download: bool | None = None, verbose: bool = True, transform: ImageTransform | None = None,
                 stream: bool = False, workers: int = 0, **options):
    """Load `split` of dataset `name` as an `ImageDataset` (uint8 images on the CPU, see dataset.py), or, with
    `stream=True`, as a `FileDataset` that decodes its files when asked (ImageFolder and file lists only).

    name: one of DATASETS, "synthetic:NxCxHxW[:K]", an ImageFolder directory, "imagefolder:PATH", or a file
    list (.csv/.tsv/.txt, "filelist:PATH"; see filelist.py).
    subset=N keeps a class-stratified random N images chosen with `seed` (deterministic).
    download: True fetches with torchvision if not found, None only when online, False never.
    transform: the run's `ImageTransform`; its `img_size` resizes every image (eval transform: shorter side
    to ⌊S/crop_pct⌋, centre crop), once here for data held in memory. A training split for random-resized
    crops is kept at the crop source size instead (`ImageTransform.source`). None: every image as it is.
    workers: DataLoader processes decoding image files (0: this process).
    options (synthetic only): num_samples, image_size=(C, H, W), num_classes.
    """
    return data_source(name, data_dir, download, **options).load(split, subset, seed, transform, stream, workers,
                                                                 verbose)

