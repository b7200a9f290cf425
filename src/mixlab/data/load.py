"""`load_dataset(name, split)`: find, read, verify and (optionally) subset a dataset; `ensure_default_dataset`.

Verification of the built-in datasets: IDX header and exact length, sha256 of the uncompressed IDX content,
CIFAR pickle structure, archive sha256 for cifar10-jpeg, per-split counts, and (in `ImageDataset`) dtypes,
shapes and label range. Anything off raises a one-line ValueError naming the file.
"""
import difflib
import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import torch

from . import sources
from .cifar import read_cifar
from .cifar_jpeg import archive_labels, read_cifar10_jpeg
from .spec import ALIASES, BUILTIN
from .dataset import ImageDataset, stratified_indices
from .idx import read_idx
from .filelist import is_file_list, read_file_list
from .files import FileDataset, file_stats, index_files
from .imagefolder import channel_stats, folder_index, split_dir
from .synthetic import make_synthetic, parse_spec
from .transforms import ImageTransform, pil_to_tensor, tensor_to_pil

_SPLITS = ("train", "test")


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


def _online(host, timeout=3.0):
    """Whether `host:443` answers within `timeout` s (DNS included, hence the thread); MIXLAB_OFFLINE=1 says no."""
    if os.environ.get("MIXLAB_OFFLINE"):
        return False
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def download(name, verbose=True):
    """Fetch `name` with torchvision into the cache (torchvision's layout, which the search accepts)."""
    import torchvision.datasets as tvd

    spec = BUILTIN.get(name)
    if spec is None or not spec.download:
        raise ValueError(f"{name} cannot be downloaded")
    cls = getattr(tvd, spec.download)
    root = sources.cache_dir()
    _log(verbose, f"downloading {name} with torchvision into {root}")
    for train in (True, False):
        cls(root=str(root), train=train, download=True)
    return root


def locate(name, split="train", data_dir=None, download_ok=None, verbose=True):
    """The folder holding `split` of a built-in dataset, downloading it if allowed; else a one-line error."""
    folder, looked = sources.find_folder(name, split, data_dir)
    if folder is not None:
        return folder
    host = BUILTIN[name].download_host
    tried = "download disabled"
    if host and (download_ok or (download_ok is None and _online(host))):
        try:
            download(name, verbose)
        except Exception as e:   # network or mirror trouble: fall through to the error naming what we tried
            tried = f"torchvision download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        folder, looked = sources.find_folder(name, split, data_dir)
        if folder is not None:
            return folder
    elif host and download_ok is None:
        tried = "offline, no download"
    raise FileNotFoundError(f"{name} ({split}) not found; looked in {', '.join(map(str, looked))}; {tried}. "
                            f"To get it: {BUILTIN[name].how_to_get}")


def _read_builtin(name, split, folder, subset, seed):
    """-> (images, labels, classes, note, subset_done) read from `folder`, verified."""
    spec = BUILTIN[name]
    expected = spec.counts[split]
    files = sources.required_files(name, folder, split)
    if spec.reader == "idx":
        h, w = spec.image_size[1:]
        images = read_idx(files[0], spec.sha256.get(files[0].name.removesuffix(".gz")))
        labels = read_idx(files[1], spec.sha256.get(files[1].name.removesuffix(".gz"))).to(torch.int64)
        if images.dim() != 3 or images.shape[1:] != (h, w) or len(images) != expected or len(labels) != expected:
            raise ValueError(f"{files[0]}: expected {expected} images of {h}x{w} and as many labels, got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        return images.unsqueeze(1), labels, list(spec.classes), "", False
    if spec.reader == "cifar-pickle":
        images, labels, classes = read_cifar(folder, split, spec.num_classes)
        if len(images) != expected:
            raise ValueError(f"{folder}: {split} split holds {len(images)} images, expected {expected}")
        return images, labels, classes, "", False
    # cifar-jpeg: pick the subset from the labels first so only those images are decoded.
    indices = None
    if subset is not None:
        indices = stratified_indices(archive_labels(files[0], expected), subset, seed, spec.num_classes)
    images, labels, note = read_cifar10_jpeg(files[0], sources.cache_dir(), indices,
                                             spec.sha256.get(files[0].name), expected)
    return images, labels, list(spec.classes), f"lossy JPEG q75 4:2:0 copy of CIFAR-10, {note}", indices is not None


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


def load_dataset(name, split="train", data_dir=None, subset=None, seed=0, download=None, verbose=True,
                 transform=None, stream=False, workers=0, **options):
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
    key, path = resolve_name(name)
    transform = transform or ImageTransform()
    if options and not key.startswith("synthetic"):
        raise ValueError(f"options {sorted(options)} only apply to the synthetic dataset")
    if stream and key not in ("imagefolder", "filelist"):
        raise ValueError(f"--data-path stream decodes image files (an ImageFolder or a file list); {key} is read "
                         f"whole into memory: use --data-path memory or auto")
    lossy, subset_done = False, False
    if key not in ("imagefolder", "filelist") and split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test' for {key}, got {split!r}")
    storage = transform.source() if transform.rrc and split == "train" and not stream else transform
    if key in ("imagefolder", "filelist"):
        return _load_files(key, path, split, subset, seed, transform, storage, stream, workers, verbose)
    if key.startswith("synthetic"):
        n, c, h, w, k = parse_spec(key)
        n = options.pop("num_samples", n)
        c, h, w = options.pop("image_size", (c, h, w))
        k = options.pop("num_classes", k)
        if options:
            raise ValueError(f"unknown synthetic options {sorted(options)}: use num_samples, image_size, num_classes")
        images, labels = make_synthetic(split, n, c, h, w, k)
        classes, source = [f"class{i}" for i in range(k)], f"generated synthetic:{n}x{c}x{h}x{w}:{k}"
        mean, std = channel_stats(make_synthetic("train", n, c, h, w, k)[0] if split != "train" else images)
        key = "synthetic"
    else:
        folder = locate(key, split, data_dir, download, verbose)
        images, labels, classes, note, subset_done = _read_builtin(key, split, folder, subset, seed)
        source = f"{folder}" + (f" ({note})" if note else "")
        mean, std = BUILTIN[key].mean, BUILTIN[key].std
        lossy = BUILTIN[key].lossy
    ds = ImageDataset(images=images, labels=labels, classes=classes, mean=mean, std=std, name=key, lossy=lossy,
                      source=source, split=split)
    if subset is not None and not subset_done:
        indices = stratified_indices(ds.labels, subset, seed, ds.num_classes)
        if len(indices) < len(ds):
            ds = ds.take(indices, f"stratified subset of {len(indices)}/{len(ds)}, seed {seed}")
    elif subset_done:
        ds.source += f"; stratified subset of {len(ds)}/{BUILTIN[key].counts[split]}, seed {seed}"
    _, h, w = ds.image_size
    if not storage.is_identity_for(h, w):
        what = _describe_resize(transform, storage, [(h, w)])
        ds = replace(ds, images=_resize_in_memory(ds.images, storage), source=f"{ds.source}; {what}",
                     out_size=(transform.img_size,) * 2 if storage is not transform else None)
        _log(verbose, f"{ds.name} {split}: {what}")
    _log(verbose, f"{ds.name} {split}: {len(ds)} images {'x'.join(map(str, ds.image_size))}, "
                  f"{ds.num_classes} classes from {ds.source}")
    return ds


def _load_files(key, path, split, subset, seed, transform, storage, stream, workers, verbose):
    """An ImageFolder or file list split: indexed from headers, decoded whole (memory) or per epoch (stream)."""
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
        _log(verbose, f"{key} {split}: {len(fds)} image files streamed at {'x'.join(map(str, fds.image_size))}, "
                      f"{fds.num_classes} classes from {fds.source}")
        return fds
    ds = fds.to_memory(workers)
    if storage is not transform:
        ds.out_size = (transform.img_size,) * 2
    _log(verbose, f"{key} {split}: {len(ds)} images {'x'.join(map(str, ds.image_size))}, "
                  f"{ds.num_classes} classes from {ds.source}")
    return ds


def ensure_default_dataset(verbose=True, data_dir=None):
    """Make sure Fashion-MNIST (the demo's dataset) is on disk and return its folder.

    Found in the usual places -> that folder. Otherwise, as root with apt-get available, run
    `apt-get install -y dataset-fashion-mnist` (printing so); otherwise (or if that fails) try the torchvision
    download; otherwise a one-line FileNotFoundError saying how to get it.
    """
    def found():
        folders = [sources.find_folder("fashion-mnist", s, data_dir)[0] for s in _SPLITS]
        return folders[0] if folders[0] is not None and folders[0] == folders[1] else None

    if (folder := found()) is not None:
        return folder
    attempts = []
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        for cmd in (["apt-get", "install", "-y", "dataset-fashion-mnist"],
                    ["apt-get", "update"], ["apt-get", "install", "-y", "dataset-fashion-mnist"]):
            _log(verbose, f"Fashion-MNIST not found; running: {' '.join(cmd)}")
            done = subprocess.run(cmd, stdout=sys.stderr if verbose else subprocess.DEVNULL,
                                  stderr=sys.stderr if verbose else subprocess.DEVNULL)
            if cmd[1] == "install" and done.returncode == 0 and (folder := found()) is not None:
                return folder
        attempts.append("apt-get install dataset-fashion-mnist failed")
    try:
        download("fashion-mnist", verbose)
        if (folder := found()) is not None:
            return folder
    except Exception as e:
        attempts.append(f"torchvision download failed ({type(e).__name__})")
    looked = ", ".join(map(str, sources.candidate_folders("fashion-mnist", data_dir)))
    raise FileNotFoundError(f"Fashion-MNIST not found; looked in {looked}; {'; '.join(attempts)}. "
                            f"To get it: {BUILTIN['fashion-mnist'].how_to_get}")
