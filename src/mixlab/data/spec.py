"""`DatasetSpec`: each built-in dataset described once — its files and checksums, counts, classes, image
size, default normalisation, where it may live on disk, how to get it, and whether it is lossy.

The built-in source (`load.py`), its readers (`readers.py`), the file search (`sources.py`), the paper tables
and their plots all read these entries, so a new built-in dataset is one entry here plus, if its file format is
new, one reader in `readers.READERS`.
"""
from dataclasses import dataclass, field

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str                      # how tables and plots name it
    description: str
    reader: str                     # idx | cifar-pickle | cifar-jpeg
    image_size: tuple               # (C, H, W)
    counts: dict                    # split -> images
    classes: tuple = ()             # empty: read from the dataset's own meta file (CIFAR-100)
    num_classes: int = 10
    mean: tuple = ()                # published train-split statistics, per channel, in [0, 1] units
    std: tuple = ()
    files: dict = field(default_factory=dict)       # split -> file names inside the dataset folder
    sha256: dict = field(default_factory=dict)      # file name -> sha256 (IDX: of the uncompressed content)
    folders: tuple = ()             # sub-folders of a search root that may hold it (flat and torchvision layout)
    self_names: tuple = ()          # names a search root may itself have when it *is* the dataset folder
    download: str = ""              # torchvision dataset class for the online download ("" = none)
    download_host: str = ""
    how_to_get: str = ""
    lossy: bool = False
    # Whether a horizontal flip keeps the label: a mirrored digit is another glyph, a mirrored shirt a shirt.
    mirror_invariant: bool = True

    def split_files(self, split):
        return self.files[split]


def _idx(name, label, description, sha256, folders, self_names, classes, mean, std, download, host,
         how_to_get, mirror_invariant):
    return DatasetSpec(name, label, description, "idx", (1, 28, 28), {"train": 60000, "test": 10000},
                       classes=classes, mean=mean, std=std, files=IDX_FILES, sha256=sha256, folders=folders,
                       self_names=self_names, download=download, download_host=host, how_to_get=how_to_get,
                       mirror_invariant=mirror_invariant)


BUILTIN = {
    "mnist": _idx(
        "mnist", "MNIST", "MNIST handwritten digits, 1×28×28, 10 classes, 60000/10000 (IDX)",
        {"train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
         "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
         "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
        ("mnist", "MNIST/raw"), ("mnist",), tuple(str(d) for d in range(10)), (0.1307,), (0.3081,),
        "MNIST", "ossci-datasets.s3.amazonaws.com",
        "set MIXLAB_DATA / --data-dir to a folder holding mnist/*.gz, or allow the torchvision download "
        "(--download) when online", mirror_invariant=False),
    "fashion-mnist": _idx(
        "fashion-mnist", "Fashion-MNIST", "Fashion-MNIST (Zalando), 1×28×28, 10 classes, 60000/10000 (IDX)",
        {"train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
        ("fashion-mnist", "FashionMNIST/raw"), ("fashion-mnist", "fashionmnist"), FASHION_CLASSES,
        (0.2860,), (0.3530,), "FashionMNIST", "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "apt-get install dataset-fashion-mnist, or set MIXLAB_DATA / --data-dir to a folder holding "
        "fashion-mnist/*.gz", mirror_invariant=True),
    "cifar10": DatasetSpec(
        "cifar10", "CIFAR-10", "CIFAR-10, 3×32×32, 10 classes, 50000/10000 (official python pickles)",
        "cifar-pickle", (3, 32, 32), {"train": 50000, "test": 10000}, classes=CIFAR10_CLASSES,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        folders=("cifar-10-batches-py",), self_names=("cifar-10-batches-py",), download="CIFAR10",
        download_host="www.cs.toronto.edu",
        how_to_get="set MIXLAB_DATA / --data-dir to a folder holding cifar-10-batches-py/, or allow the "
                   "torchvision download (--download) when online; a lossy JPEG copy may be available as "
                   "cifar10-jpeg"),
    "cifar100": DatasetSpec(
        "cifar100", "CIFAR-100", "CIFAR-100 (fine labels), 3×32×32, 100 classes, 50000/10000 (official python "
        "pickles)", "cifar-pickle", (3, 32, 32), {"train": 50000, "test": 10000}, num_classes=100,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        files={"train": ("train", "meta"), "test": ("test", "meta")},
        folders=("cifar-100-python",), self_names=("cifar-100-python",), download="CIFAR100",
        download_host="www.cs.toronto.edu",
        how_to_get="set MIXLAB_DATA / --data-dir to a folder holding cifar-100-python/, or allow the "
                   "torchvision download (--download) when online"),
    # CIFAR-10's statistics: the JPEG copy's channel means agree with them to 1e-4.
    "cifar10-jpeg": DatasetSpec(
        "cifar10-jpeg", "CIFAR-10 JPEG", "CIFAR-10 as a lossy JPEG (q75, 4:2:0) copy, 3×32×32, 10 classes, "
        "50000/10000", "cifar-jpeg", (3, 32, 32), {"train": 50000, "test": 10000}, classes=CIFAR10_CLASSES,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        files={"train": ("train_jpeg.npz",), "test": ("test_jpeg.npz",)},
        sha256={"train_jpeg.npz": "3c30c0d59e977b0e83be397c1ce1af60c127cad18f009f85bfc548950891e545",
                "test_jpeg.npz": "d293dc27c4f70c77805ea970d5694a8ec7b95e4f682d432fd6adef1ade1df081"},
        folders=("cifar10-jpg", "cifar10-jpeg"), self_names=("cifar10-jpg", "cifar10-jpeg"),
        how_to_get="set MIXLAB_DATA / --data-dir to a folder holding cifar10-jpg/{train,test}_jpeg.npz",
        lossy=True),
}
SYNTHETIC_DESCRIPTION = "deterministic class-pattern images for tests: synthetic[:NxCxHxW[:K]]"
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100",
           "cifar10-jpg": "cifar10-jpeg", "cifar10_jpeg": "cifar10-jpeg"}


def get_spec(name):
    """The spec of a built-in dataset (aliases accepted), or None for synthetic data and image folders."""
    return BUILTIN.get(ALIASES.get(str(name).lower(), str(name).lower()))
