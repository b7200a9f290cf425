"""The training loop: one readable epoch loop in the spirit of airbench.

    for epoch: loader.set_epoch(epoch); seed dropout from (seed, epoch, rank)
        for step: lr ← schedule(step); loss = CE_smooth(model(x), y); backward; clip; optimiser step; EMA
        evaluate on the test split (no augmentation) → commit trainer_state.pt → derived files

Determinism: the loader's shuffling/augmentation and the dropout RNG are pure functions of (seed, epoch), the
lr is a pure function of the step, and the commit point holds model + optimiser + EMA + RNG states, so a run
killed at any instant and resumed produces bit-identical metrics and weights on CPU.
bf16 autocast on CUDA, fp32 on CPU. DDP when torchrun sets WORLD_SIZE > 1: the batch is split over ranks,
evaluation is sharded over ranks, and only rank 0 writes files.
"""
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import create_model
from ..checkpoint import model_config, write_json
from . import distributed
from .config import TrainConfig, check_resume_matches, default_out, merge_for_resume, resolve
from .ema import ModelEma
from .evaluate import evaluate
from .outputs import print_row, write_outputs
from .schedule import lr_at
from .state import STATE_FILE, load_state, rng_state, save_state, set_rng_state


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message names the epoch, step and the last good checkpoint."""


def pick_device(device="auto"):
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return device


def epoch_seed(seed, epoch, rank):
    """Dropout / drop-path randomness of one epoch on one rank, independent of what ran before."""
    return (int(seed) * 1_000_003 + int(epoch)) * 1_009 + int(rank)


def normalisation(spec, dataset):
    """The recipe's `normalize` ('dataset', [m, s] or [[m…], [s…]]) as per-channel lists for this data."""
    c = dataset.image_size[0]
    if spec == "dataset" or spec is None:
        return list(dataset.mean), list(dataset.std)
    mean, std = spec
    mean = [float(mean)] * c if isinstance(mean, (int, float)) else [float(m) for m in mean]
    std = [float(std)] * c if isinstance(std, (int, float)) else [float(s) for s in std]
    if len(mean) != c or len(std) != c:   # e.g. CIFAR statistics on one-channel data
        return list(dataset.mean), list(dataset.std)
    return mean, std


def build_optimizer(model, hp):
    from timm.optim import create_optimizer_v2
    opt = {"adam": "adam", "adamw": "adamw", "sgd": "momentum"}[hp["optimizer"]]   # timm 'sgd' is Nesterov
    kwargs = {"momentum": hp.get("momentum", 0.9)} if opt == "momentum" else {}
    # weight_decay_filter: no decay on biases, norms and model.no_weight_decay() (pos_embed, cls_token);
    # without it every parameter is decayed, as in the DIANet code.
    target = model if hp.get("weight_decay_filter", True) else list(model.parameters())
    return create_optimizer_v2(target, opt=opt, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.0), **kwargs)


def _log(msg):
    print(msg, flush=True)


def _resume_setup(config, log):
    """Settle what `config.resume` continues: (config, state or None, finished summary or None)."""
    run = Path(config.resume)
    if not run.is_dir():
        raise FileNotFoundError(f"nothing to resume at {run}: not a directory")
    if config.out and Path(config.out).resolve() != run.resolve():
        raise ValueError(f"--resume {run} continues that run in place; --out must be the same directory or unset")
    cfg_file = run / "config.json"
    if not cfg_file.exists():
        # Killed before the first write: nothing was trained, so this is a fresh run in that directory.
        log(f"{run} holds no checkpoint yet; starting from scratch there")
        config.out, config.resume = str(run), None
        return config, None, None
    saved = json.loads(cfg_file.read_text())["train"]
    check_resume_matches(saved, config)
    config = merge_for_resume(saved, config)
    summary_file = run / "summary.json"
    if summary_file.exists():
        summary = json.loads(summary_file.read_text())
        if summary.get("completed") and summary.get("epochs") >= config.epochs:
            return config, None, summary
    state = load_state(run / STATE_FILE) if (run / STATE_FILE).exists() else None
    return config, state, None


def train(config: TrainConfig, log=_log):
    """Train `config.model` on `config.data`; returns the summary dict (also written to summary.json)."""
    log = log or (lambda *_: None)
    dist_info, ddp_device = distributed.setup(pick_device(config.device).type)
    if not dist_info.is_main:
        log = lambda *_: None   # noqa: E731 (only rank 0 speaks)
    try:
        return _train(config, dist_info, ddp_device, log)
    finally:
        distributed.cleanup(dist_info)


def _train(config, d, ddp_device, log):
    from ..data import DeviceLoader, load_dataset

    state = None
    if config.resume:
        config, state, finished = _resume_setup(config, log)
        if finished is not None:
            log(f"{config.resume} is already complete ({finished['epochs']} epochs); its summary:")
            log(json.dumps(finished, indent=2))
            return finished
    train_ds = load_dataset(config.data, split="train", data_dir=config.data_dir, subset=config.subset,
                            seed=config.seed)
    test_ds = load_dataset(config.data, split="test", data_dir=config.data_dir, subset=config.subset,
                           seed=config.seed)
    hp = resolve(config, train_size=len(train_ds), world_size=d.world_size)
    if hp.get("batch_size_capped_from"):
        log(f"batch {hp['batch_size_capped_from']} is larger than the {len(train_ds)} training images: "
            f"using batch {hp['batch_size']}")
    config.epochs, config.batch_size, config.lr = hp["epochs"], hp["batch_size"], hp["lr"]
    if config.recipe in (None, "auto"):
        config.recipe = hp["name"]   # record what auto chose; a recipe file path stays a path
    out = Path(config.out or default_out(config))
    config.out = str(out)
    device = ddp_device or pick_device(config.device)
    if hp["batch_size"] % d.world_size:
        raise ValueError(f"batch size {hp['batch_size']} does not split over {d.world_size} processes")
    rank_batch = hp["batch_size"] // d.world_size

    c, h, _ = train_ds.image_size
    mean, std = normalisation(hp.get("normalize"), train_ds)
    loader = DeviceLoader(train_ds, rank_batch, device, train=True, crop_padding=hp.get("crop_padding", 0),
                          flip=hp.get("flip", False), normalize=(mean, std), seed=config.seed, rank=d.rank,
                          world_size=d.world_size)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training images make no batch of {hp['batch_size']}")

    torch.manual_seed(config.seed)
    model = create_model(config.model, num_classes=train_ds.num_classes, in_chans=c, img_size=h,
                         **config.model_kwargs).to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = build_optimizer(model, hp)
    ema = ModelEma(model, hp["ema_decay"]) if hp.get("ema_decay") else None
    meta = dict(mean=mean, std=std, class_names=list(train_ds.classes), dataset=train_ds.name, in_chans=c,
                img_size=h, lossy=bool(train_ds.lossy), data_source=train_ds.source)

    history = {"rows": [], "step_loss": [], "step_lr": [], "best_top1": -1.0, "best_epoch": 0,
               "train_seconds": 0.0}
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        history = state["history"]
        start_epoch = state["epoch"]
        log(f"resuming {out} after epoch {start_epoch}/{hp['epochs']}")
    if d.is_main:
        config_json = model_config(model, **meta)
        config_json.update(train=config.to_dict(), recipe=hp, world_size=d.world_size)
        write_json(out / "config.json", config_json)
    eval_model = ema.module if ema is not None else model
    if state is not None and d.is_main:
        # Files derived from the last commit may not have been written before the kill: write them again.
        write_outputs(out, eval_model, history, _summary(config, hp, train_ds, test_ds, params, device, d,
                      history, start_epoch), best_now=history["best_epoch"] == start_epoch)

    net = model
    if d.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    if config.compile:
        net = torch.compile(net)
    autocast = device.type == "cuda"
    subset_note = f", subset {config.subset} (stratified train, at most that many test)" if config.subset else ""
    log(f"training {config.model} ({params:,} params) on {train_ds.name} [{len(train_ds)} train / "
        f"{len(test_ds)} test{subset_note}] with recipe {hp['name']} v{hp['version']}: {hp['optimizer']} "
        f"lr {hp['lr']:g}, batch {hp['batch_size']}"
        f"{f' ({d.world_size} ranks × {rank_batch})' if d.enabled else ''}, {hp['epochs']} epochs, "
        f"{hp['schedule']} schedule, device {device}; run directory {out}")

    for epoch in range(start_epoch, hp["epochs"]):
        t0 = time.perf_counter()
        row, step_loss, step_lr = _train_epoch(net, model, ema, optimizer, loader, hp, config, epoch,
                                               steps_per_epoch, device, d, autocast, out, log)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_only = time.perf_counter() - t0    # the training pass alone: the throughput figure
        augment = (hp.get("crop_padding", 0), hp.get("flip", False), epoch_seed(config.seed, epoch, 0)) \
            if hp.get("test_augment") else None
        result = evaluate(eval_model, test_ds, device, mean, std, config.eval_batch_size, d, autocast, augment)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        row.update(test_loss=result["loss"], test_top1=result["top1"], seconds=seconds,
                   train_pass_seconds=train_only)
        history["rows"].append(row)
        history["step_loss"].extend(step_loss)
        history["step_lr"].extend(step_lr)
        history["train_seconds"] += seconds
        best_now = result["top1"] > history["best_top1"]
        if best_now:
            history["best_top1"], history["best_epoch"] = result["top1"], epoch + 1
        if d.is_main:
            save_state(out / STATE_FILE, {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "ema": ema.module.state_dict() if ema is not None else None, "rng": rng_state(),
                "history": history, "torch": str(torch.__version__)})
            write_outputs(out, eval_model, history, _summary(config, hp, train_ds, test_ds, params, device, d,
                                                             history, epoch + 1), best_now)
        log(print_row(row, hp["epochs"]))
        distributed.barrier(d)
    summary = _summary(config, hp, train_ds, test_ds, params, device, d, history, len(history["rows"]))
    log(f"done: test top-1 {summary['test_top1']:.2f}% (best {summary['best_test_top1']:.2f}% at epoch "
        f"{summary['best_epoch']}) in {summary['train_seconds']:.1f}s; run directory {out}")
    return summary


def _train_epoch(net, model, ema, optimizer, loader, hp, config, epoch, steps_per_epoch, device, d, autocast,
                 out, log):
    from tqdm.auto import tqdm

    net.train()
    loader.set_epoch(epoch)
    torch.manual_seed(epoch_seed(config.seed, epoch, d.rank))
    losses = torch.zeros(steps_per_epoch, device=device)
    global_losses = torch.zeros_like(losses)   # rank-averaged, filled in one slice per check
    correct = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    lrs = []
    smoothing, clip = hp.get("label_smoothing", 0.0) or 0.0, hp.get("grad_clip")
    bar = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{hp['epochs']}", file=sys.stderr,
               leave=False, disable=not (d.is_main and sys.stderr.isatty()))
    checked = 0
    for i, (x, y) in enumerate(bar):
        step = epoch * steps_per_epoch + i
        lr = lr_at(step, hp, hp["lr"], hp["epochs"], steps_per_epoch)
        lrs.append(lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if ema is not None:
            ema.update(model, step)
        losses[i] = loss.detach()
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if (i + 1) % config.log_every == 0 or i + 1 == steps_per_epoch:
            # One sync every log_every steps: the steps since the last check, rank-averaged, checked for NaN/inf.
            new = distributed.all_reduce_sum(losses[checked:i + 1].clone(), d) / d.world_size
            global_losses[checked:i + 1] = new
            bad = (~torch.isfinite(new)).nonzero()
            if len(bad):
                s = checked + int(bad[0])
                value = global_losses[s].item()
                where = f"the last good checkpoint is epoch {epoch} in {out}" if epoch else \
                    f"no checkpoint was written yet ({out})"
                raise TrainingDiverged(f"loss became {value} at epoch {epoch + 1} step {s + 1}; {where}")
            checked = i + 1
            bar.set_postfix(loss=f"{global_losses[i].item():.4f}", lr=f"{lr:.2e}")
    bar.close()
    totals = distributed.all_reduce_sum(torch.stack([correct, torch.tensor(float(seen), device=device,
                                                                               dtype=torch.float64)]), d)
    step_loss = global_losses.tolist()
    row = {"epoch": epoch + 1, "lr": lrs[-1], "train_loss": sum(step_loss) / len(step_loss),
           "train_top1": 100.0 * totals[0].item() / max(totals[1].item(), 1)}
    return row, step_loss, lrs


def _summary(config, hp, train_ds, test_ds, params, device, d, history, epochs_done):
    rows = history["rows"]
    last = rows[-1] if rows else {}
    return {
        "model": config.model, "dataset": train_ds.name, "data": config.data, "lossy": bool(train_ds.lossy), "recipe": hp["name"],
        "recipe_version": hp["version"], "epochs": hp["epochs"], "epochs_done": epochs_done, "seed": config.seed,
        "batch_size": hp["batch_size"], "lr": hp["lr"], "subset": config.subset,
        "train_images": len(train_ds), "test_images": len(test_ds),
        "test_top1": last.get("test_top1"), "test_loss": last.get("test_loss"),
        "best_test_top1": history["best_top1"] if rows else None, "best_epoch": history["best_epoch"],
        "params": params, "train_seconds": history["train_seconds"], "device": str(device),
        "world_size": d.world_size, "torch": str(torch.__version__), "python": platform.python_version(),
        "completed": epochs_done >= hp["epochs"],
    }


