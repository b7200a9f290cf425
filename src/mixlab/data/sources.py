"""Where each dataset lives on disk, and what the official files must look like.

Search order (design.md "Data sources, in order"): the `data_dir` argument, `$MIXLAB_DATA`, the cache
(`$MIXLAB_CACHE` or `~/.cache/mixlab`), then `/usr/share/datasets/fashion-mnist` (Debian package
`dataset-fashion-mnist`). Inside a root each dataset is accepted in the flat layout of shared/data
(`fashion-mnist/*.gz`, `mnist/*.gz`, `cifar10-jpg/*.npz`), in torchvision's layout (`FashionMNIST/raw/`,
`MNIST/raw/`, `cifar-10-batches-py/`, `cifar-100-python/`), or as the root itself when it is that folder.
"""
import os
from pathlib import Path

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

# sha256 of the *uncompressed* IDX files (shared/data/README.md; torchvision's MNIST is the same content).
IDX_SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}
JPEG_SHA256 = {"train_jpeg.npz": "3c30c0d59e977b0e83be397c1ce1af60c127cad18f009f85bfc548950891e545",
               "test_jpeg.npz": "d293dc27c4f70c77805ea970d5694a8ec7b95e4f682d432fd6adef1ade1df081"}

COUNTS = {"mnist": {"train": 60000, "test": 10000}, "fashion-mnist": {"train": 60000, "test": 10000},
          "cifar10": {"train": 50000, "test": 10000}, "cifar100": {"train": 50000, "test": 10000},
          "cifar10-jpeg": {"train": 50000, "test": 10000}}

# Published train-split statistics; cifar10-jpeg uses CIFAR-10's (its channel means agree to 1e-4).
STATS = {"mnist": ((0.1307,), (0.3081,)), "fashion-mnist": ((0.2860,), (0.3530,)),
         "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
         "cifar10-jpeg": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
         "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]

DATASETS = {
    "mnist": "MNIST handwritten digits, 1×28×28, 10 classes, 60000/10000 (IDX)",
    "fashion-mnist": "Fashion-MNIST (Zalando), 1×28×28, 10 classes, 60000/10000 (IDX)",
    "cifar10": "CIFAR-10, 3×32×32, 10 classes, 50000/10000 (official python pickles)",
    "cifar100": "CIFAR-100 (fine labels), 3×32×32, 100 classes, 50000/10000 (official python pickles)",
    "cifar10-jpeg": "CIFAR-10 as a lossy JPEG (q75, 4:2:0) copy, 3×32×32, 10 classes, 50000/10000",
    "synthetic": "deterministic class-pattern images for tests: synthetic[:NxCxHxW[:K]]",
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100",
           "cifar10-jpg": "cifar10-jpeg", "cifar10_jpeg": "cifar10-jpeg"}

# Sub-folders of a root that may hold each dataset, and the names a root itself may have.
_FOLDERS = {"fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"), "mnist": ("mnist", "MNIST/raw"),
            "cifar10": ("cifar-10-batches-py",), "cifar100": ("cifar-100-python",),
            "cifar10-jpeg": ("cifar10-jpg", "cifar10-jpeg")}
_SELF_NAMES = {"fashion-mnist": ("fashion-mnist", "fashionmnist"), "mnist": ("mnist",),
               "cifar10": ("cifar-10-batches-py",), "cifar100": ("cifar-100-python",),
               "cifar10-jpeg": ("cifar10-jpg", "cifar10-jpeg")}

DOWNLOAD_HOSTS = {"mnist": "ossci-datasets.s3.amazonaws.com",
                  "fashion-mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                  "cifar10": "www.cs.toronto.edu", "cifar100": "www.cs.toronto.edu"}


def cache_dir():
    return Path(os.environ.get("MIXLAB_CACHE") or Path.home() / ".cache" / "mixlab").expanduser()


def roots(data_dir=None):
    """The search roots, in order, without duplicates."""
    found = []
    for r in (data_dir, os.environ.get("MIXLAB_DATA"), cache_dir()):
        if r and Path(r).expanduser() not in found:
            found.append(Path(r).expanduser())
    return found


def candidate_folders(name, data_dir=None):
    """Every folder that could hold `name`, in search order."""
    out = []
    for root in roots(data_dir):
        if root.name.lower() in _SELF_NAMES[name]:
            out.append(root)
        out.extend(root / sub for sub in _FOLDERS[name])
    if name == "fashion-mnist":
        out.append(DEBIAN_FASHION_MNIST)
    return list(dict.fromkeys(out))


def required_files(name, folder, split):
    """The files `split` of `name` needs in `folder` (IDX: the .gz or the plain file, plain preferred)."""
    folder = Path(folder)
    if name in ("mnist", "fashion-mnist"):
        return [folder / f if (folder / f).exists() else folder / f"{f}.gz" for f in IDX_FILES[split]]
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return [folder / f for f in files]
    if name == "cifar100":
        return [folder / split, folder / "meta"]
    return [folder / f"{split}_jpeg.npz"]


def find_folder(name, split, data_dir=None):
    """(folder, looked): the first candidate holding every file of `split`, or None, and what was searched."""
    looked = candidate_folders(name, data_dir)
    for folder in looked:
        if all(f.is_file() for f in required_files(name, folder, split)):
            return folder, looked
    return None, looked
