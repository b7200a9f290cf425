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
def evaluate(model, dataset, device, mean, std, batch_size=1000, dist_info=None, precision=None, augment=None):
    """{'loss', 'top1' (percent), 'n'} of `model` on `dataset` (an ImageDataset or a streamed FileDataset).

    precision: a `Precision` (the run's), None for fp32. `augment=(padding, flip, seed)` reproduces the
    official NiNformer/Activator quirk of evaluating on randomly cropped and flipped test images: like
    torchvision's RandomCrop on the PIL image, the padding is black (0) *before* normalisation.
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
            logits = model(x)
        logits = logits.float()
        totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += (logits.argmax(1) == y).sum()
        totals[2] += len(y)
    all_reduce_sum(totals, d)
    model.train(was_training)
    n = max(totals[2].item(), 1)
    return {"loss": totals[0].item() / n, "top1": 100.0 * totals[1].item() / n, "n": int(totals[2].item())}


def evaluate_run(run_dir, data=None, split="test", weights=None, device="cpu", data_dir=None, subset=None,
                 batch_size=1000):
    """Score a run directory's best (or `weights`) checkpoint on a split of its dataset (or `data`), at the
    precision the run trained with. A diffusion run reports its test loss (top1 None)."""
    from ..checkpoint import load
    from ..data import load_dataset
    from ..device import pick_device
    from ..registry import model_cfg
    from ..rundir import RunDir
    from .precision import Precision

    run = RunDir(run_dir)
    config = run.read_config(need=("mean", "std", "input_size"))
    if model_cfg(config["model"]).get("task") == "diffusion":   # a denoiser: its test loss, no top-1
        from ..diffusion.runs import evaluate_denoiser
        return evaluate_denoiser(run_dir, data=data, split=split, weights=weights, device=device,
                                 data_dir=data_dir, subset=subset, batch_size=batch_size)
    weights_file = {"best": "best.safetensors", "last": "last.safetensors", None: None}.get(weights, weights)
    device = pick_device(device)
    model = load(run_dir, weights=weights_file, map_location="cpu").to(device)
    train_cfg = config.get("train") if isinstance(config.get("train"), dict) else {}
    name = data or train_cfg.get("data") or config.get("dataset")
    if not name:
        raise ValueError(f"{run.path}/config.json names no dataset: pass --data")
    transform = _recorded_transform(config)
    stream = train_cfg.get("data_path") == "stream" and name == train_cfg.get("data")
    ds = load_dataset(name, split=split, data_dir=data_dir or train_cfg.get("data_dir"), subset=subset,
                      seed=train_cfg.get("seed", 0) or 0, transform=transform, stream=stream,
                      workers=train_cfg.get("data_workers") or 0)
    expected = tuple(config["input_size"])
    if tuple(ds.image_size) != expected:
        raise ValueError(f"{name} images are {tuple(ds.image_size)} but the model was trained on {expected}")
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    precision = Precision(recipe.get("precision", "fp32"), device)
    result = evaluate(model, ds, device, config["mean"], config["std"], batch_size=batch_size, precision=precision)
    return {**result, "dataset": ds.name, "split": split, "weights": weights_file or "default weights",
            "model": config["model"], "precision": precision.name}


def _recorded_transform(config):
    """The eval transform a run recorded (config.json `eval_transform`); None for runs at their data's own
    size (and runs recorded before image size was a choice)."""
    from ..data import ImageTransform
    record = config.get("eval_transform")
    return ImageTransform.from_record(record) if record else None
