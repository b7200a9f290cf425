"""The training loop: one readable epoch loop in the spirit of airbench, shared by every task.

    run = start_run(config)                      # data, recipe, model, task, optimiser, run directory (locked)
    for epoch in remaining epochs:
        train_epoch: per step lr ← schedule(step); loss = task.loss(run, x, y, step, scale); backward; clip;
                     step; EMA
        evaluate_epoch: task.evaluate(run, epoch) on the test split (no augmentation unless the recipe's
                        test_augment quirk)
        commit_epoch: guards (non-finite weights/loss, collapse where the task watches for it) →
                      trainer_state.pt → derived files → task.after_commit

The task (`tasks.TASKS`, chosen by the model's registration) decides what differs: classification
(`classification.py`: cross-entropy, test loss and top-1, the best epoch by top-1) or diffusion
(`mixlab.diffusion.task`: DDPM's L_simple on (t, ε) keyed by (seed, step), the fixed-(t, ε) test loss, the best
epoch by lowest test loss, sample grids after commits). The engine owns the rest.

Determinism: the loader's shuffling/augmentation and the dropout RNG (`state.epoch_seed`) are pure functions of
(seed, epoch), the lr is a pure function of the step, and the commit point holds model + optimiser + EMA +
scaler + RNG states, so a run killed at any instant and resumed produces bit-identical metrics and weights on
CPU. Precision is the recipe's (`precision.py`); whether the steps go through torch.compile is pinned or measured
on the run's first epochs (`autocompile.py`). DDP when torchrun sets WORLD_SIZE > 1: the global batch is
split over ranks, evaluation is sharded, and only rank 0 writes files (holding the run directory's lock).
"""
from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from .. import create_model
from ..checkpoint import model_config
from ..device import pick_device
from ..decision import decide
from ..fileio import first_line
from ..rundir import CONFIG, CURVES, RunDir, RunError
from . import autocompile, distributed
from .config import TrainConfig, check, default_out, resolve
from .ema import ModelEma
from .guards import TrainingDiverged, collapse_status, nonfinite_parameters
from .outputs import CurvesClock, plot_curves, print_row, write_outputs
from .precision import Precision
from .recipes import Recipe
from .schedule import lr_at
from .classification import ClassificationTask
from .state import epoch_seed, rng_state, set_rng_state
from .tasks import Task, task_for

if TYPE_CHECKING:   # the annotations of `Run` only
    from ..data.dataset import ImageDataset
    from ..data.files import FileDataset
    from ..data.loader import DeviceLoader
    from ..data.stream import StreamingLoader


def build_optimizer(model, recipe):
    from timm.optim import create_optimizer_v2
    opt = {"adam": "adam", "adamw": "adamw", "sgd": "momentum"}[recipe.optimizer]   # timm 'sgd' is Nesterov
    kwargs = {"momentum": recipe.momentum} if opt == "momentum" else {}
    # weight_decay_filter: no decay on biases, norms and model.no_weight_decay() (pos_embed, cls_token);
    # without it every parameter is decayed, as in the DIANet code.
    target = model if recipe.weight_decay_filter else list(model.parameters())
    return create_optimizer_v2(target, opt=opt, lr=recipe.lr, weight_decay=recipe.weight_decay, **kwargs)


def _log(msg):
    print(msg, flush=True)


@dataclass
class Run:
    """Everything one training run holds: built once by `start_run`, read and advanced by each phase."""
    config: TrainConfig
    recipe: Recipe
    dir: RunDir
    device: torch.device
    dist: distributed.Dist
    precision: Precision
    train_ds: ImageDataset | FileDataset
    test_ds: ImageDataset | FileDataset
    loader: DeviceLoader | StreamingLoader
    model: torch.nn.Module          # the bare model: its state_dict is what is saved
    net: torch.nn.Module            # what a step calls: eager_net or compiled_net (`autocompile` chooses)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    ema: ModelEma | None
    mean: list
    std: list
    params: int
    log: Callable[[str], None]
    task: Task = field(default_factory=ClassificationTask)
    start_epoch: int = 0
    history: dict = field(default_factory=lambda: {"rows": [], "step_loss": [], "step_lr": [], "best_value": None,
                                                   "best_epoch": 0, "train_seconds": 0.0, "collapse": None})
    curves: CurvesClock = field(default_factory=CurvesClock)
    eager_net: torch.nn.Module | None = None      # `model`, wrapped in DDP when distributed
    compiled_net: torch.nn.Module | None = None   # torch.compile(eager_net), built the first time it is chosen

    @property
    def eval_model(self):
        return self.ema.module if self.ema is not None else self.model

    @property
    def steps_per_epoch(self):
        return len(self.loader)

    @property
    def total_steps(self):
        return self.recipe.max_steps or self.recipe.epochs * self.steps_per_epoch

    @property
    def is_main(self):
        return self.dist.is_main


def train(config: TrainConfig, log: Callable[[str], None] | None = _log) -> dict:
    """Train `config.model` on `config.data`; returns the summary dict (also written to summary.json)."""
    log = log or (lambda *_: None)
    check(config)
    dist_info, ddp_device = distributed.setup(pick_device(config.device).type)
    if not dist_info.is_main:
        log = lambda *_: None   # noqa: E731 (only rank 0 speaks)
    run = trackers = None
    try:
        run = start_run(config, dist_info, ddp_device, log)
        if isinstance(run, dict):   # a finished run asked to resume: nothing to do
            return run
        if run.is_main and run.config.trackers:   # fed from the committed history (mixlab.track)
            from ..track import Trackers
            trackers = Trackers(run.dir.path, run.config.trackers, run.dir.read_config(), run.history, log)
            trackers.sync(run.history)
        for epoch in range(run.start_epoch, run.recipe.epochs):
            t0 = time.perf_counter()
            row = train_epoch(run, epoch)
            row["train_pass_seconds"] = time.perf_counter() - t0    # the training pass alone: throughput
            steps = len(row["_step_loss"])
            autocompile.after_epoch(run, row["train_pass_seconds"], row.pop("_first_step_seconds"), steps,
                                    steps_left=run.total_steps - len(run.history["step_loss"]) - steps)
            row.update(evaluate_epoch(run, epoch))
            row["seconds"] = time.perf_counter() - t0
            commit_epoch(run, row)
            autocompile.select_net(run)   # the next epoch's net, as the committed record says
            if trackers:
                trackers.sync(run.history)
        summary = make_summary(run)
        if trackers:
            trackers.close(summary, run.history, ok=True)
        log(f"done: {run.task.done_line(summary)} in {summary['train_seconds']:.1f}s; run directory {run.dir.path}")
        return summary
    finally:
        if trackers:
            trackers.close()   # a failed or interrupted run: flushed, marked failed; a resume continues it
        if run is not None and not isinstance(run, dict):
            run.dir.release()
        distributed.cleanup(dist_info)


def start_run(config, d, ddp_device, log):
    """Settle the run directory through `decision.decide`, then read the data and build model and optimiser.

    Rank 0 takes the run directory's lock first and only then looks at what is there, and holds it across an
    overwrite's removal and a resume's read, so two processes can never both decide to write; its decision
    (or its refusal) reaches every rank. Returns a `Run`, or the summary dict of a finished run that
    `--resume` was asked to continue with no more epochs.
    """
    out = RunDir(config.resume or config.out or default_out(config))
    decision = None
    if d.is_main:
        if config.resume and not out.path.exists():
            raise FileNotFoundError(f"nothing to resume at {out.path}: it does not exist")
        out.acquire()      # held until the run ends; a second process gets a one-line "in use" error
        try:
            decision = decide(out, config, log)
        except Exception as e:   # noqa: BLE001 (re-raised below on every rank, after the broadcast)
            decision = e
    decision = distributed.broadcast_from_main(decision, d)
    try:
        if isinstance(decision, BaseException):
            raise decision
        if decision.action == "reuse":
            out.release()
            return decision.summary
        if decision.note and decision.action == "overwrite":
            log(decision.note)
        state = out.read_state() if decision.action == "resume" else None
        if d.is_main and decision.action == "overwrite":
            out.clear()
        distributed.barrier(d)
        config = dataclasses.replace(decision.config, resume=decision.config.resume if state is not None else None)
        return _build_run(config, d, ddp_device, log, out, decision.recipe if state is not None else None, state)
    except BaseException:
        out.release()
        raise


def _build_run(config, d, ddp_device, log, out, saved_recipe, state):
    config.out = str(out.path)
    device = ddp_device or pick_device(config.device)
    task = task_for(config.model, config.task)
    # the task owns its data: both splits, the loader, the recipe resolved against them, config.json's data part
    data = task.run_data(config, d, device, saved_recipe, log)
    train_ds, test_ds, loader, recipe, mean, std = data.train, data.test, data.loader, data.recipe, data.mean, data.std
    config.data_path = data.path
    precision = Precision(recipe.precision, device)
    precision.apply_global_settings()
    recipe = dataclasses.replace(recipe, precision=precision.name)   # 'auto' recorded as what it resolved to

    if recipe.max_steps:   # a step budget decides the epochs: the last one is cut where the budget ends
        recipe = dataclasses.replace(recipe, epochs=math.ceil(recipe.max_steps / len(loader)))
    torch.manual_seed(config.seed)
    model = task.build_model(config, recipe, data, log).to(device)
    if recipe.fast_dropout:
        from ..layers.dropout import use_fast_dropout
        use_fast_dropout(model)
    if recipe.channels_last:   # the weights' layout decides the convolutions' (their input follows)
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, recipe)
    ema = ModelEma(model, recipe.ema_decay) if recipe.ema_decay else None
    run = Run(config=config, recipe=recipe, dir=out, device=device, dist=d, precision=precision,
              train_ds=train_ds, test_ds=test_ds, loader=loader, model=model, net=model, optimizer=optimizer,
              scaler=precision.grad_scaler(), ema=ema, mean=mean, std=std,
              params=sum(p.numel() for p in model.parameters()), log=log, task=task)
    task_config = task.setup(run)   # the task checks the run and builds what it needs (e.g. a noise schedule)
    if state is not None:
        _restore(run, state)
        log(f"resuming {out.path} after epoch {run.start_epoch}/{recipe.epochs}")
    if d.is_main:
        config_json = model_config(model, **data.meta)
        config_json.update(train=config.to_dict(), recipe=recipe.to_dict(), world_size=d.world_size, **task_config)
        out.write_json(CONFIG, config_json)
        if state is not None:   # files derived from the last commit may not have been written before the kill
            write_outputs(out, run.eval_model, run.history, make_summary(run),
                          best_now=run.history["best_epoch"] == run.start_epoch, fields=task.metric_fields)
            if run.history["rows"]:
                task.after_commit(run, run.history["rows"][-1])

    if d.enabled:
        run.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    run.eager_net = run.net
    run.history["compile"] = autocompile.start(config.compile, run.history.get("compile"))
    autocompile.select_net(run)
    subset_note = f", subset {config.subset} (stratified train, at most that many test)" if config.subset else ""
    ranks = f" ({d.world_size} ranks × {recipe.batch_size // d.world_size})" if d.enabled else ""
    log(f"training {config.model}{_mixer_note(config)} ({run.params:,} params) on {train_ds.name} [{len(train_ds)} train / "
        f"{len(test_ds)} test{subset_note}] with recipe {recipe.name} v{recipe.version}: {recipe.optimizer} "
        f"lr {recipe.lr:g}, batch {recipe.batch_size}{ranks}, {recipe.epochs} epochs, {recipe.schedule} "
        f"schedule, {precision.describe()}, {run.steps_per_epoch} steps/epoch "
        f"({'dropping' if recipe.drop_last else 'keeping'} the last partial batch), device {device}; "
        f"run directory {out.path}")
    return run


def _mixer_note(config):
    """' with the X mixer' when --model-kwargs swaps the mixer (every compare run is the base model so)."""
    mixer = config.model_kwargs.get("mixer") if isinstance(config.model_kwargs, dict) else None
    return f" with the {mixer} token mixer" if isinstance(mixer, str) else ""


def _restore(run, state):
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.ema is not None:
            run.ema.module.load_state_dict(state["ema"])
        if run.scaler is not None and state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise RunError(f"{run.dir / 'trainer_state.pt'} does not fit this run's model or optimiser: "
                       f"{first_line(e)}") from None
    history = dict(state["history"])
    history.setdefault("collapse", None)
    run.history, run.start_epoch = history, int(state["epoch"])


def train_epoch(run, epoch):
    """One pass over the training split; returns the epoch's train row (loss, top-1, lr)."""
    from tqdm.auto import tqdm

    recipe, d, device = run.recipe, run.dist, run.device
    run.net.train()
    run.loader.set_epoch(epoch)
    torch.manual_seed(epoch_seed(run.config.seed, epoch, d.rank))
    per_epoch = run.steps_per_epoch
    # a step budget (recipe.max_steps) ends the last epoch early, where the schedule ends
    steps = min(per_epoch, recipe.max_steps - epoch * per_epoch) if recipe.max_steps else per_epoch
    losses = torch.zeros(steps, device=device)
    global_losses = torch.zeros_like(losses)   # rank-averaged, filled in one slice per check
    totals, lrs, checked = None, [], 0
    bar = tqdm(run.loader.iter_weighted(), total=steps, desc=f"epoch {epoch + 1}/{recipe.epochs}",
               file=sys.stderr, leave=False, disable=not (d.is_main and sys.stderr.isatty()))
    t0, first_step_s = time.perf_counter(), 0.0
    for i, (x, y, loss_scale) in enumerate(bar):
        if i == steps:
            break
        step = epoch * per_epoch + i
        lr = lr_at(step, recipe, recipe.lr, recipe.epochs, per_epoch)
        lrs.append(lr)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        if i == 0 and run.history["compile"]["state"] == autocompile.TRIAL:
            loss, stats = autocompile.first_trial_step(run, lambda: _train_step(run, x, y, step, loss_scale))
        else:
            loss, stats = _train_step(run, x, y, step, loss_scale)
        if i == 0:   # the compile rule sets the first step apart (it carries compilation and the epoch's set-up)
            if device.type == "cuda":
                torch.cuda.synchronize()
            first_step_s = time.perf_counter() - t0
        if run.ema is not None:
            run.ema.update(run.model, step)
        losses[i] = loss.detach()
        totals = stats if totals is None else totals + stats
        if (i + 1) % run.config.log_every == 0 or i + 1 == steps:
            # One sync every log_every steps: the steps since the last check, rank-summed, checked for NaN/inf.
            new = distributed.all_reduce_sum(losses[checked:i + 1].clone(), d) / d.world_size
            global_losses[checked:i + 1] = new
            bad = (~torch.isfinite(new)).nonzero()
            if len(bad):
                s = checked + int(bad[0])
                _diverged(run, epoch, f"the training loss became {global_losses[s].item()} at epoch {epoch + 1} "
                                      f"step {s + 1}")
            checked = i + 1
            bar.set_postfix(loss=f"{global_losses[i].item():.4f}", lr=f"{lr:.2e}")
    bar.close()
    # The loss of step i is computed before update i, so the last update is checked on the weights.
    bad = nonfinite_parameters(run.model) or (run.ema is not None and nonfinite_parameters(run.ema.module))
    if bad:
        _diverged(run, epoch, f"the weights became non-finite ({bad}) in the last steps of epoch {epoch + 1}")
    totals = distributed.all_reduce_sum(totals, d)
    step_loss = global_losses.tolist()
    return {"epoch": epoch + 1, "lr": lrs[-1], "train_loss": sum(step_loss) / len(step_loss),
            **run.task.train_row(totals), "_step_loss": step_loss, "_step_lr": lrs,
            "_first_step_seconds": first_step_s}


def _train_step(run, x, y, step, loss_scale):
    """Loss, backward, clip, optimiser step; returns the task's (loss, stats)."""
    loss, stats = run.task.loss(run, x, y, step, loss_scale)
    run.optimizer.zero_grad(set_to_none=True)
    _backward_and_step(run, loss)
    return loss, stats


def _backward_and_step(run, loss):
    clip = run.recipe.grad_clip
    if run.scaler is None:
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
        run.optimizer.step()
        return
    run.scaler.scale(loss).backward()
    if clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()


def evaluate_epoch(run, epoch):
    """The task's test metrics of the evaluated model (EMA if any) at the run's precision."""
    result = run.task.evaluate(run, epoch)
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    if not torch.isfinite(torch.tensor(result["test_loss"])):
        _diverged(run, epoch, f"the test loss became {result['test_loss']} after epoch {epoch + 1}")
    return result


def commit_epoch(run, row):
    """Record the epoch, commit the trainer state (the epoch's point of no return), write derived files."""
    h = run.history
    h["step_loss"].extend(row.pop("_step_loss"))
    h["step_lr"].extend(row.pop("_step_lr"))
    h["rows"].append(row)
    h["train_seconds"] += row["seconds"]
    value, best = row[run.task.best_metric], h["best_value"]
    best_now = best is None or (value > best if run.task.higher_is_better else value < best)
    if best_now:
        h["best_value"], h["best_epoch"] = value, row["epoch"]
    if run.task.watch_collapse:
        collapse = collapse_status(h["rows"], run.train_ds.num_classes, steps_done=len(h["step_loss"]))
        if collapse and not h["collapse"]:
            run.log(f"WARNING: {run.config.model} collapsed: {collapse}")
        h["collapse"] = h["collapse"] or collapse
    if run.is_main:
        run.dir.write_state({
            "epoch": row["epoch"], "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "ema": run.ema.module.state_dict() if run.ema is not None else None,
            "scaler": run.scaler.state_dict() if run.scaler is not None else None, "rng": rng_state(),
            "history": h, "torch": str(torch.__version__)})
        write_outputs(run.dir, run.eval_model, h, make_summary(run), best_now, run.task.metric_fields,
                      curves=run.curves.due(final=row["epoch"] >= run.recipe.epochs))
        run.task.after_commit(run, row)
    run.log(print_row(row, run.recipe.epochs))
    distributed.barrier(run.dist)


def _diverged(run, epoch, what):
    """Stop the run: summary.json says why; the last committed epoch (finite, checked) stays the good one."""
    where = f"the last good checkpoint is epoch {epoch} in {run.dir.path}" if epoch else \
        f"no checkpoint was written ({run.dir.path})"
    message = f"{what}; {where}"
    if run.is_main:
        summary = make_summary(run)
        summary["stopped"] = f"diverged: {message}"
        run.dir.write_json("summary.json", summary)
        plot_curves(run.dir / CURVES, run.history["rows"], title=f"{summary['model']} on {summary['dataset']}")
    raise TrainingDiverged(message)


def make_summary(run):
    config, recipe, h = run.config, run.recipe, run.history
    rows = h["rows"]
    last = rows[-1] if rows else {}
    epochs_done = len(rows)
    return {
        "model": config.model, "dataset": run.train_ds.name, "data": config.data, "lossy": bool(run.train_ds.lossy),
        "recipe": recipe.name, "recipe_version": recipe.version, "precision": recipe.precision,
        "drop_last": recipe.drop_last, "epochs": recipe.epochs, "epochs_done": epochs_done, "seed": config.seed,
        "batch_size": recipe.batch_size, "lr": recipe.lr, "subset": config.subset,
        "validation": config.validation,   # N: the evaluation split (test_* below, best) was N held-out training images
        "train_images": len(run.train_ds), "test_images": len(run.test_ds),
        **run.task.summary(run, last, h["best_value"] if rows else None), "best_epoch": h["best_epoch"],
        "collapsed": bool(h.get("collapse")), "collapse_reason": h.get("collapse"),
        "params": run.params, "train_seconds": h["train_seconds"], "device": str(run.device),
        "world_size": run.dist.world_size, "torch": str(torch.__version__), "python": platform.python_version(),
        "compile": h.get("compile"),   # pinned or auto, with what auto measured and decided (autocompile)
        "completed": epochs_done >= recipe.epochs,
    }
