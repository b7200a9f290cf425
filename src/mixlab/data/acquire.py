"""Getting a built-in dataset onto this machine: the network probe, torchvision's download, and the Debian
package of Fashion-MNIST (the demo's dataset).

`locate` is what a built-in source calls: the folder found on disk (sources.py's search order), else a
download when allowed (`download_ok`: True always, None only when the dataset's host answers, False never),
else a one-line FileNotFoundError naming every folder looked in and how to get the data. Nothing here reads
images; the readers (readers.py) do.
"""
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

from ..fileio import first_line
from . import sources
from .spec import BUILTIN

SPLITS = ("train", "test")


def _log(verbose: bool, message: str) -> None:
    if verbose:
        print(f"[mixlab.data] {message}", file=sys.stderr, flush=True)


def online(host: str, timeout: float = 3.0) -> bool:
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


def download(name: str, verbose: bool = True) -> Path:
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


def locate(name: str, split: str = "train", data_dir=None, download_ok: bool | None = None,
           verbose: bool = True) -> Path:
    """The folder holding `split` of a built-in dataset, downloading it if allowed; else a one-line error."""
    folder, looked = sources.find_folder(name, split, data_dir)
    if folder is not None:
        return folder
    host = BUILTIN[name].download_host
    tried = "download disabled"
    if host and (download_ok or (download_ok is None and online(host))):
        try:
            download(name, verbose)
        except Exception as e:   # network or mirror trouble: fall through to the error naming what we tried
            tried = f"torchvision download failed ({type(e).__name__}: {first_line(e, '')})"
        folder, looked = sources.find_folder(name, split, data_dir)
        if folder is not None:
            return folder
    elif host and download_ok is None:
        tried = "offline, no download"
    raise FileNotFoundError(f"{name} ({split}) not found; looked in {', '.join(map(str, looked))}; {tried}. "
                            f"To get it: {BUILTIN[name].how_to_get}")


def ensure_default_dataset(verbose: bool = True, data_dir=None) -> Path:
    """Make sure Fashion-MNIST (the demo's dataset) is on disk and return its folder.

    Found in the usual places -> that folder. Otherwise, as root with apt-get available, run
    `apt-get install -y dataset-fashion-mnist` (printing so); otherwise (or if that fails) try the torchvision
    download; otherwise a one-line FileNotFoundError saying how to get it.
    """
    def found():
        folders = [sources.find_folder("fashion-mnist", s, data_dir)[0] for s in SPLITS]
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
