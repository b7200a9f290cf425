"""A small grid of recipe and model overrides, trained through the same launchers as the paper tables.

Every point of the grid (the product of the values of each key, times the seeds) is an ordinary run
directory, `OUT/<key=value,…>/seed<k>/`; a rerun reads finished points, resumes partial ones and trains the
rest, so a sweep resumes like a table. A point's directory that holds another request's run (other epochs,
subset, seed, values) is never reported as the point: it is refused, or with `overwrite` trained again. `grid` holds recipe keys (validated as `--set` is), `model_grid` model
keyword arguments; values are JSON when they parse as JSON (numbers, true/false), strings otherwise.
"""
import itertools
import json
from pathlib import Path

from ..decision import decide
from ..fileio import safe_name
from ..rundir import RunDir
from ..train.recipes import parse_value


def parse_grid(items, what="--grid"):
    """['lr=0.001,0.003', 'flip=true,false'] -> {'lr': [0.001, 0.003], 'flip': [True, False]}."""
    grid = {}
    for item in items or ():
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"{what} expects KEY=V1,V2,…, got {item!r}")
        if key in grid:
            raise ValueError(f"{what} names {key} twice")
        grid[key] = [parse_value(v) for v in values.split(",")]
    return grid


def _name(point):
    """The point's folder name; a value that would leave OUT (a '/' or '..' in it) is refused in one line."""
    name = ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in point.items()) or "base"
    return safe_name(name, "the grid point")


def plan_sweep(base, grid, model_grid, seeds, out):
    """[(point, TrainConfig)] for every grid point and seed; the recipe keys are checked before anything runs."""
    from ..train import TrainConfig
    from ..train.config import resolve
    keys = list(grid) + [f"model.{k}" for k in model_grid]
    values = list(grid.values()) + list(model_grid.values())
    if not keys:
        raise ValueError("a sweep needs at least one --grid or --model-grid key")
    jobs = []
    for combo in itertools.product(*values):
        point = dict(zip(keys, combo))
        overrides = {**base.overrides, **{k: v for k, v in point.items() if not k.startswith("model.")}}
        kwargs = {**base.model_kwargs, **{k[6:]: v for k, v in point.items() if k.startswith("model.")}}
        for seed in range(seeds):
            cfg = TrainConfig(**{**base.to_dict(), "overrides": overrides, "model_kwargs": kwargs, "seed": seed,
                                 "out": str(Path(out, _name(point), f"seed{seed}"))})
            resolve(cfg)   # an unknown key or a bad value: one line, before any run starts
            jobs.append((point, cfg))
    return jobs


def sweep(base, grid, model_grid=None, seeds=1, out="runs/sweep", launcher=None, log=print):
    """Train every point (through `launcher`, default one after another); returns the rows, one per point
    and seed, in grid order, and writes OUT/sweep.json."""
    from ..fileio import write_json
    from .launch import Sequential
    if not str(out).strip():
        raise ValueError("--out '' names no folder: give a directory for the sweep's runs")
    jobs = plan_sweep(base, grid, model_grid or {}, seeds, out)
    rows, todo = {}, []
    for i, (point, cfg) in enumerate(jobs):
        # a finished point is the answer only when it is the run asked for (decision.py); a run of another
        # request (other --epochs, --subset, …) is refused here, before anything trains, or with
        # --overwrite trained again
        decision = decide(RunDir(cfg.out), cfg, reuse=True)
        if decision.action == "reuse":
            rows[i] = decision.summary
        else:
            if decision.note:
                log(decision.note)
            todo.append((i, decision.config))
    launcher = launcher or Sequential()
    started = []

    def on_start(i):
        started.append(i)
        log(f"[{len(started)}/{len(todo)}] {jobs[i][1].out}")

    def on_done(i, outcome):
        kind, value = outcome
        rows[i] = value if kind == "ok" else {"error": value}
        log(f"    {jobs[i][1].out}: " + (f"final test top-1 {value['test_top1']:.2f}%" if kind == "ok" else
                                         f"failed: {value}"))

    if todo and not isinstance(launcher, Sequential):
        log(f"{len(todo)} runs to train: {launcher.describe()}")
    launcher.map(todo, on_start, on_done)
    table = []
    for i, (point, cfg) in enumerate(jobs):
        s = rows.get(i, {})
        table.append({**point, "seed": cfg.seed, "test_top1": s.get("test_top1"),
                      "best_test_top1": s.get("best_test_top1"), "params": s.get("params"),
                      "train_seconds": s.get("train_seconds"), "error": s.get("error"), "run": cfg.out})
    write_json(Path(out) / "sweep.json", {"model": base.model, "data": base.data, "rows": table})
    return table
