"""Top-1 accuracy and mean cross-entropy on a dataset split, no augmentation (unless the paper quirk asks).

Evaluation is sharded under DDP: rank r scores images r, r+W, r+2W, …, and the sums are all-reduced, so
every rank gets the same numbers for the whole split.
"""
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
def evaluate(model, dataset, device, mean, std, batch_size=1000, dist_info=None, autocast=False,
             augment=None):
    """{'loss', 'top1' (percent), 'n'} of `model` on `dataset` (.images uint8, .labels int64).

    `augment=(padding, flip, seed)` reproduces the official NiNformer/Activator quirk of evaluating on
    randomly cropped and flipped test images.
    """
    d = dist_info or Dist()
    was_training = model.training
    model.eval()
    index = torch.arange(d.rank, len(dataset.labels), d.world_size)
    totals = torch.zeros(3, dtype=torch.float64, device=device)   # loss sum, correct, count
    generator = torch.Generator().manual_seed(augment[2]) if augment else None
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size]
        x = normalise(dataset.images[idx], mean, std, device)
        if augment:
            # Crop and flip as torchvision RandomCrop(pad)+RandomHorizontalFlip, per sample (the data loader's gather).
            from ..data.loader import crop_flip
            pad, flip = int(augment[0] or 0), bool(augment[1])
            offsets = torch.randint(0, 2 * pad + 1, (len(idx), 2), generator=generator).to(device)
            flips = (torch.rand(len(idx), generator=generator) < 0.5).to(device) if flip else None
            x = crop_flip(x, offsets, flips, pad)
        y = dataset.labels[idx].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
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
    """Score a run directory's best (or `weights`) checkpoint on a split of its dataset (or `data`)."""
    import json
    from pathlib import Path

    from ..checkpoint import load
    from ..data import load_dataset
    from .engine import pick_device

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    config = json.loads((run_dir / "config.json").read_text())
    weights_file = {"best": "best.safetensors", "last": "last.safetensors", None: None}.get(weights, weights)
    device = pick_device(device)
    model = load(run_dir, weights=weights_file, map_location="cpu").to(device)
    train_cfg = config.get("train", {})
    name = data or train_cfg.get("data") or config.get("dataset")
    ds = load_dataset(name, split=split, data_dir=data_dir or train_cfg.get("data_dir"), subset=subset,
                      seed=train_cfg.get("seed", 0) or 0)
    expected = tuple(config["input_size"])
    if tuple(ds.image_size) != expected:
        raise ValueError(f"{name} images are {tuple(ds.image_size)} but the model was trained on {expected}")
    result = evaluate(model, ds, device, config["mean"], config["std"], batch_size=batch_size)
    return {**result, "dataset": ds.name, "split": split, "weights": weights_file or "default weights",
            "model": config["model"]}
