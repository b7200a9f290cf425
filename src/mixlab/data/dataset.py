"""The in-memory dataset every reader returns, and the class-stratified subset.

Contract (design.md "Dataset"): `images` uint8 [N, C, H, W] on the CPU, `labels` int64 [N] in [0, K),
`classes` the K class names, `mean`/`std` per channel in [0, 1] units (the *train* statistics, so train
and test are normalised alike), `source` says where the pixels came from (and "lossy" when they are not
the original data). `out_size` (H, W) is set when the loader produces another size than the one stored: a
training split kept as the source of device-side random-resized crops.
"""
from dataclasses import dataclass, replace

import torch


@dataclass
class ImageDataset:
    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    mean: tuple
    std: tuple
    name: str
    lossy: bool = False
    source: str = ""
    split: str = "train"
    out_size: tuple = None

    def __post_init__(self):
        # Every reader ends here, so these checks are the last line of verification for all of them.
        where = f"{self.name} {self.split} ({self.source})"
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"{where}: images must be uint8 [N, C, H, W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{where}: labels must be int64 [{self.images.shape[0]}], got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(f"{where}: labels range {int(self.labels.min())}..{int(self.labels.max())} is outside "
                             f"0..{len(self.classes) - 1}")
        channels = self.images.shape[1]
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(f"{where}: mean/std need {channels} positive entries, got {self.mean} / {self.std}")

    def __len__(self):
        return self.images.shape[0]

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def image_size(self):
        """(C, H, W) of what the loader produces (the stored size unless `out_size` says otherwise)."""
        c, h, w = self.images.shape[1:]
        return (c, *self.out_size) if self.out_size else (c, h, w)

    def batches(self, indices, batch_size, workers=None):
        """uint8 batches [b, C, H, W] of samples `indices`, in order (the file-backed dataset's interface)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        for start in range(0, len(indices), batch_size):
            yield self.images[indices[start:start + batch_size]]

    def take(self, indices, note=""):
        """A new dataset holding `indices` (a LongTensor), stats and class list unchanged."""
        source = f"{self.source}; {note}" if note else self.source
        return replace(self, images=self.images[indices], labels=self.labels[indices], source=source)


def stratified_indices(labels, n, seed=0, num_classes=None):
    """Sorted indices of a class-stratified random subset of `n` of `labels`, a pure function of `seed`.

    Each class gets floor(n · share) images and the remainder goes to the largest fractional parts (ties to
    the lower class id), so 3000 of Fashion-MNIST is exactly 300 per class; the images within a class are
    drawn with a CPU generator seeded with `seed`.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    total = len(labels)
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"subset must be a positive integer, got {n!r}")
    if n >= total:
        return torch.arange(total)
    num_classes = num_classes or int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    exact = [n * c / total for c in counts]
    take = [int(e) for e in exact]
    by_fraction = sorted(range(num_classes), key=lambda k: (-(exact[k] - take[k]), k))
    for k in by_fraction[: n - sum(take)]:
        take[k] += 1
    gen = torch.Generator().manual_seed(int(seed))
    chosen = []
    for k in range(num_classes):
        members = torch.nonzero(labels == k).flatten()
        chosen.append(members[torch.randperm(len(members), generator=gen)[: take[k]]])
    return torch.sort(torch.cat(chosen)).values
