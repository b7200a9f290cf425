"""Top-1 accuracy and mean cross-entropy on a dataset split, no augmentation (unless the paper quirk asks).

Evaluation is sharded under DDP: rank r scores images r, r+W, r+2W, …, and the sums are all-reduced, so
every rank gets the same numbers for the whole split. The split is read through its `batches(indices,
batch_size)`: slices of the uint8 tensor for data held in memory, files decoded in DataLoader workers at the
run's eval transform for a streamed split (never loaded whole).
"""
import contextlib

import torch
import torch.nn.functional as F

from .distributed import Dist, all_reduce_sum


def normalise(images_uint8, mean, std, device):
    """uint8 [B, C, H, W] → float (x/255 − mean)/std on `device`."""
    x = images_uint8.to(device, non_blocking=True).float().div_(255)
    m = torch.as_tensor(mean, dtype=x.dtype, device=device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=device).view(1, -1, 1, 1)
    return (x - m) / s


@torch.no_grad()
def evaluate(model, dataset, device, mean, std, batch_size=1000, dist_info=None, precision=None, augment=None,
             flip_tta=False):
    """{'loss', 'top1' (percent), 'n'} of `model` on `dataset` (an ImageDataset or a streamed FileDataset).

    precision: a `Precision` (the run's), None for fp32. `augment=(padding, flip, seed)` reproduces the
    official NiNformer/Activator quirk of evaluating on randomly cropped and flipped test images: like
    torchvision's RandomCrop on the PIL image, the padding is black (0) *before* normalisation.
    flip_tta: logits = ½(f(x) + f(flip(x))), the horizontal-flip test-time augmentation (loss and top-1 of the
    averaged logits).
    """
    from ..data.loader import crop_flip

    d = dist_info or Dist()
    was_training = model.training
    model.eval()
    index = torch.arange(d.rank, len(dataset.labels), d.world_size)
    totals = torch.zeros(3, dtype=torch.float64, device=device)   # loss sum, correct, count
    generator = torch.Generator().manual_seed(augment[2]) if augment else None
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    for start, images in zip(range(0, len(index), batch_size), dataset.batches(index, batch_size)):
        idx = index[start:start + batch_size]
        images = images.to(device, non_blocking=True)
        if augment:
            pad, flip = int(augment[0] or 0), bool(augment[1])
            offsets = torch.randint(0, 2 * pad + 1, (len(idx), 2), generator=generator).to(device)
            flips = (torch.rand(len(idx), generator=generator) < 0.5).to(device) if flip else None
            images = crop_flip(images, offsets, flips, pad)
        x = normalise(images, mean, std, device)
        y = dataset.labels[idx].to(device)
        with autocast():
            logits = model(x).float()
            if flip_tta:
                logits = 0.5 * (logits + model(x.flip(3)).float())
        totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += (logits.argmax(1) == y).sum()
        totals[2] += len(y)
    all_reduce_sum(totals, d)
    model.train(was_training)
    n = max(totals[2].item(), 1)
    return {"loss": totals[0].item() / n, "top1": 100.0 * totals[1].item() / n, "n": int(totals[2].item())}


@torch.no_grad()
def confusion_matrix(model, dataset, device, mean, std, batch_size=1000, precision=None):
    """The K × K confusion matrix of `model` on `dataset` (no augmentation, one process): entry C[i, j] counts
    the images of true class i that the model puts in class j (argmax of the logits, as `evaluate` scores
    top-1), so row i sums to the images of class i and trace(C) / ΣC × 100 is `evaluate`'s top-1.
    K is the dataset's class count (the model's logits must have K columns); an int64 tensor on the CPU."""
    was_training = model.training
    model.eval()
    k = dataset.num_classes
    counts = torch.zeros(k * k, dtype=torch.int64)
    index = torch.arange(len(dataset.labels))
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    for start, images in zip(range(0, len(index), batch_size), dataset.batches(index, batch_size)):
        y = dataset.labels[index[start:start + batch_size]]
        with autocast():
            logits = model(normalise(images, mean, std, device))
        if logits.shape[-1] != k:
            raise ValueError(f"the model gives {logits.shape[-1]} class scores but {dataset.name} has {k} classes")
        # (true, predicted) → one flat bin true·K + predicted, counted in one bincount
        counts += torch.bincount(y * k + logits.float().argmax(1).cpu(), minlength=k * k)
    model.train(was_training)
    return counts.view(k, k)
