"""`mixlab compare`: several token mixers in one skeleton at one budget, several seeds, one table.

    plan     the skeleton and each mixer's width/arguments, params and FLOPs (plan.py); the budget as a step
             count per mixer; training step time and peak memory measured once per mixer on this device.
             Written to <out>/plan.json; a rerun with the same settings reads it back (a wall-clock budget
             keeps the step counts it measured), other settings are refused in one line.
    lr grid  (--lr-grid) each mixer × each lr: seed 0 trained on the training set minus a stratified
             validation split (train/data_setup.validation_split), scored on that split at its last epoch;
             the best lr is the mixer's. The test set is never read.
    seeds    each mixer × seed: the full training set at the chosen lr; the table's test top-1 is the last
             epoch's (never the best epoch's: that would let the test set choose).

Every run is an ordinary run directory under <out>/runs/<mixer>/{lr-<lr>,seed-<s>}: a finished one is read
back, an unfinished one resumed, so an interrupted compare completes only what is missing. Runs go through
the reproduce launchers (`--workers K`, `--launcher ray`); a run's numbers depend only on its config and its
intra-op thread count, so the rows are identical with any launcher at the same `--threads`.
"""
import json
import math
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import plan as P
from .plan import BASE_MODEL
from .stats import describe, welch

PLAN = "plan.json"
DEFAULT_RECIPE = "mixlab"


@dataclass
class CompareConfig:
    mixers: list
    data: str
    budget: str = "3epochs"
    seeds: int = 3
    recipe: str = DEFAULT_RECIPE
    out: str = "runs/compare"
    skeleton: str = None
    width: int = None
    depth: int = None
    patch: int = None
    mlp_ratio: float = None
    match: str = None                # params | flops
    lr_grid: list = None
    validation: int = None           # held-out training images for the lr grid; None: a tenth
    baseline: str = None
    subset: int = None
    batch_size: int = None
    overrides: dict = field(default_factory=dict)
    device: str = "auto"
    data_dir: str = None
    workers: int = 1
    launcher: str = "local"
    address: str = None
    threads: int = None              # intra-op threads per run; None: all (sequential) or a share (workers)
    runs_per_gpu: int = 1            # Ray
    cpus_per_run: int = 1            # Ray
    measure: bool = True             # bench each mixer's step time and peak memory (always for a seconds budget)
    trackers: tuple = ()             # mixlab.track names every run also logs to (changes no number: not ASKED)


# What decides a compare's numbers: a rerun must agree on these to reuse its runs.
ASKED = ("mixers", "data", "budget", "seeds", "recipe", "skeleton", "width", "depth", "patch", "mlp_ratio", "match",
         "lr_grid", "validation", "subset", "batch_size", "overrides")


def differences(asked, recorded):
    """[(key, asked value, recorded value)] where two settings dicts disagree (JSON-equal values agree)."""
    keys = sorted(set(asked) | set(recorded))
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)   # noqa: E731
    return [(k, asked.get(k), recorded.get(k)) for k in keys if not same(asked.get(k), recorded.get(k))]


def data_facts(data, subset=None, data_dir=None):
    """(channels, image side, classes, training images) of a dataset, read without loading its images."""
    from ..data import data_source
    facts = data_source(data, data_dir=data_dir).describe()
    c, (s, _), k, n = facts.channels, facts.sizes[0], facts.num_classes, facts.counts["train"]
    return c, s, k, (min(subset, n) if subset else n)


def _measure(kwargs, facts, batch, device, threads):
    """{train_step_s, peak_mib} of one training step of the model at `batch` (mixlab.bench)."""
    import torch
    from ..bench.run import BenchConfig, bench_module
    from ..registry import create_model
    c, s, k, _ = facts
    torch.manual_seed(0)
    model = create_model(BASE_MODEL, num_classes=k, in_chans=c, img_size=s, **kwargs)
    cfg = BenchConfig(device=str(device), batch_size=batch, warmup=1, repeats=3, inner=1,
                      threads=threads or torch.get_num_threads()).resolved()
    row = bench_module(model, BASE_MODEL, cfg, input_size=(c, s))
    return {"train_step_s": row["train_step_ms"] / 1e3, "peak_mib": row.get("train_memory_mb")}


def make_plan(cc, log=print):
    """The compare's plan (module docstring): a dict written to plan.json."""
    import torch
    from ..device import pick_device
    from ..mixers import mixer_class
    from ..train.recipes import resolve_recipe

    if not cc.mixers:
        raise ValueError("--mixers needs at least one mixer")
    if len(set(cc.mixers)) != len(cc.mixers):
        raise ValueError(f"--mixers names a mixer twice: {','.join(cc.mixers)}")
    for m in cc.mixers:
        mixer_class(m)   # unknown names and broken file mixers fail here, in one line, before anything trains
    labels = [P.mixer_label(m) for m in cc.mixers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two mixers share the name {next(l for l in labels if labels.count(l) > 1)!r}")
    if cc.baseline is not None and cc.baseline not in labels:
        raise ValueError(f"--baseline {cc.baseline!r} is not one of the mixers ({', '.join(labels)})")
    if cc.match is not None and cc.match not in P.MATCH:
        raise ValueError(f"--match must be params or flops, got {cc.match!r}")
    if not isinstance(cc.seeds, int) or cc.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {cc.seeds!r}")
    grid = list(cc.lr_grid or [])
    if any(not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)) for v in grid):
        raise ValueError(f"--lr-grid takes positive learning rates, got {grid}")
    budget = P.parse_budget(cc.budget)
    skeleton = P.skeleton_args(cc.skeleton, cc.width, cc.depth, cc.patch, cc.mlp_ratio)
    facts = data_facts(cc.data, cc.subset, cc.data_dir)
    c, s, k, n_train = facts
    recipe = resolve_recipe(cc.recipe, BASE_MODEL).replace(where="--set", **cc.overrides)
    batch = min(cc.batch_size or recipe.batch_size, n_train)
    validation = cc.validation or (max(k, n_train // 10) if grid else None)
    if validation is not None and validation >= n_train:
        raise ValueError(f"a validation split of {validation} leaves nothing to train on ({n_train} images)")
    device = pick_device(cc.device)
    measure = cc.measure or budget.kind == "seconds"
    mixers, target = [], None
    for mixer, label in zip(cc.mixers, labels):
        width = int(skeleton["width"])
        if cc.match and target is not None:
            width, _ = P.match_width(mixer, skeleton, target, cc.match, c, s, k)
        kwargs = P.model_kwargs(mixer, skeleton, width)
        params, flops, train_flops = P.figures(kwargs, c, s, k)
        if cc.match and target is None:
            target = params if cc.match == "params" else flops
        measured = _measure(kwargs, facts, batch, device, cc.threads) if measure else {}
        steps = P.budget_steps(budget, batch, n_train, train_flops, measured.get("train_step_s"))
        mixers.append({"mixer": mixer, "label": label, "width": width, "model_kwargs": kwargs, "params": params,
                       "flops": flops, "train_flops": train_flops, "steps": steps,
                       "epochs": steps / (n_train // batch), **measured})
        log(f"compare: {label:<12} width {width:>4}  {params:>10,} params  {flops / 1e9:8.4f} GFLOPs/image  "
            f"{steps:>6} steps ({steps / (n_train // batch):.2f} epochs)"
            + (f"  {measured['train_step_s'] * 1e3:.0f} ms/step" if measured else ""))
    return {"asked": {key: getattr(cc, key) for key in ASKED}, "budget": asdict(budget), "skeleton": skeleton,
            "data": {"channels": c, "img_size": s, "classes": k, "train_images": n_train},
            "batch_size": batch, "validation": validation, "recipe": recipe.name, "recipe_version": recipe.version,
            "device": str(device), "threads": cc.threads or torch.get_num_threads(), "mixers": mixers}


def load_or_make_plan(cc, log=print):
    """plan.json of `cc.out` when it was made for the same settings, else a new plan (module docstring)."""
    path = Path(cc.out) / PLAN
    asked = {key: getattr(cc, key) for key in ASKED}
    if path.exists():
        from ..fileio import read_json
        recorded = read_json(path)   # a damaged plan is one line naming it, never an internal error
        if not (isinstance(recorded, dict) and isinstance(recorded.get("asked"), dict)
                and isinstance(recorded.get("mixers"), list)):
            raise ValueError(f"{path} is not a compare plan (no 'asked' settings or 'mixers' list); was it edited? "
                             f"Choose another --out")
        diff = differences(json.loads(json.dumps(asked)), recorded.get("asked", {}))
        if diff:
            key, a, r = diff[0]
            raise ValueError(f"{cc.out} holds a compare with {key}={json.dumps(r)}, not {json.dumps(a)}: "
                             f"choose another --out, or rerun it with the same settings to complete it")
        for m in cc.mixers:   # file mixers: checked again, the file may have changed since
            from ..mixers import mixer_class
            mixer_class(m)
        log(f"compare: reusing the plan in {path} (finished runs are read back, unfinished ones resumed)")
        return recorded
    plan = make_plan(cc, log)
    from ..fileio import write_json
    write_json(path, plan)
    return plan


def _train_config(cc, plan, m, seed, lr, out, validation=None):
    from ..train.config import TrainConfig
    return TrainConfig(model=BASE_MODEL, data=cc.data, recipe=cc.recipe, batch_size=plan["batch_size"], lr=lr,
                       subset=cc.subset, validation=validation, seed=seed, device=cc.device, out=str(out),
                       data_dir=cc.data_dir, model_kwargs=m["model_kwargs"], trackers=tuple(cc.trackers),
                       overrides={**cc.overrides, "max_steps": m["steps"]},
                       # pinned eager: a timing-based compile decision per run would make the mixers' runs
                       # differ in more than their mixer (and a time budget in more than their speed)
                       compile=False)


def _launch(cc, jobs, log):
    """Train the jobs that are not finished (resuming the unfinished); {key: ('ok', summary) | ('failed', why)}."""
    from ..decision import decide
    from ..reproduce.launch import make_launcher
    outcomes, todo = {}, []
    for key, cfg in jobs:
        # The one owner of "new, unfinished, finished or another run": a finished run of exactly this request is
        # read back, an unfinished one resumed, another run refused in one line.
        decision = decide(cfg.out, cfg, reuse=True)
        if decision.action == "reuse":
            outcomes[key] = ("ok", decision.summary)
        else:
            todo.append((key, decision.config))
    if todo:
        launcher = make_launcher(cc.workers, cc.launcher, cc.address, cc.runs_per_gpu, cc.cpus_per_run,
                                 device=cc.device, threads_per_run=cc.threads)
        log(f"compare: {len(todo)} run(s) to train ({len(jobs) - len(todo)} already finished), "
            f"{launcher.describe()}")
        launcher.map(todo, lambda key: log(f"compare: start {key}"),
                     lambda key, outcome: (outcomes.__setitem__(key, outcome),
                                           log(f"compare: {'done' if outcome[0] == 'ok' else 'FAILED'} {key}"
                                               + ("" if outcome[0] == "ok" else f": {outcome[1]}"))))
    return outcomes


def run_compare(cc, log=print, command=None):
    """Plan, choose lrs, train the seeds, write the table; returns the result dict (also compare.json)."""
    from ..rundir import RunDir
    from .report import write_report

    plan = load_or_make_plan(cc, log)
    runs = Path(cc.out) / "runs"
    grid = list(cc.lr_grid or [])
    chosen, grid_rows, failed = {}, {}, []
    if len(grid) > 1:
        jobs = [((m["label"], lr), _train_config(cc, plan, m, 0, lr, runs / m["label"] / f"lr-{lr:g}",
                                                   validation=plan["validation"]))
                for m in plan["mixers"] for lr in grid]
        outcomes = _launch(cc, jobs, log)
        for m in plan["mixers"]:
            scores = {}
            for lr in grid:
                status, got = outcomes[(m["label"], lr)]
                if status == "ok":
                    scores[lr] = got["test_top1"]   # the validation split's top-1 at the last epoch
                else:
                    failed.append(f"{m['label']} lr {lr:g}: {got}")
            grid_rows[m["label"]] = scores
            if scores:
                chosen[m["label"]] = max(grid, key=lambda lr: (scores.get(lr, -1.0), -grid.index(lr)))
    elif grid:
        chosen = {m["label"]: grid[0] for m in plan["mixers"]}
    jobs = [((m["label"], seed), _train_config(cc, plan, m, seed, chosen.get(m["label"]),
                                               runs / m["label"] / f"seed-{seed}"))
            for m in plan["mixers"] if not grid or m["label"] in chosen for seed in range(cc.seeds)]
    outcomes = _launch(cc, jobs, log)
    rows = []
    for m in plan["mixers"]:
        seeds = []
        for seed in range(cc.seeds):
            status, got = outcomes.get((m["label"], seed), ("failed", "no lr could be chosen"))
            if status != "ok":
                failed.append(f"{m['label']} seed {seed}: {got}")
                continue
            rd = RunDir(runs / m["label"] / f"seed-{seed}")
            history = rd.read_metrics()
            seconds = sum(r["train_pass_seconds"] for r in history)
            seeds.append({"seed": seed, "test_top1": got["test_top1"], "lr": got["lr"], "precision": got["precision"],
                          "train_images_per_s": m["steps"] * plan["batch_size"] / max(seconds, 1e-9),
                          "train_seconds": seconds, "test_images": got["test_images"], "run": str(rd.path)})
        top1 = describe([r["test_top1"] for r in seeds])
        rows.append({"mixer": m["label"], "spec": m["mixer"], "width": m["width"], "params": m["params"],
                     "gflops": m["flops"] / 1e9, "gmacs": m["flops"] / 2e9, "train_gflops": m["train_flops"] / 1e9,
                     "steps": m["steps"], "epochs": m["epochs"],
                     "train_images_per_s": (sum(r["train_images_per_s"] for r in seeds) / len(seeds)) if seeds else None,
                     "peak_mib": m.get("peak_mib"), "top1_mean": top1["mean"], "top1_sd": top1["sd"],
                     "top1_ci95": top1["ci95"], "seeds": seeds, "lr": seeds[0]["lr"] if seeds else chosen.get(m["label"]),
                     "lr_grid": grid_rows.get(m["label"])})
    if cc.baseline:
        base = next(r for r in rows if r["mixer"] == cc.baseline)
        for r in rows:
            if r is not base and r["seeds"] and base["seeds"]:
                r["vs_baseline"] = {"baseline": cc.baseline, **welch([s["test_top1"] for s in r["seeds"]],
                                                                     [s["test_top1"] for s in base["seeds"]])}
    result = {"command": command or " ".join(shlex.quote(a) for a in sys.argv), "asked": plan["asked"],
              "baseline": cc.baseline, "plan": {k: v for k, v in plan.items() if k != "mixers"},
              "environment": _environment(plan, rows), "rows": rows, "pairwise": pairwise(rows), "failed": failed}
    write_report(Path(cc.out), result)
    return result


def pairwise(rows):
    """{a: {b: welch(a's seeds, b's seeds)}} for every ordered pair of mixers with seeds: any claim "a beats b"
    reads its difference and p-value here, whichever mixer was the baseline."""
    top1 = {r["mixer"]: [s["test_top1"] for s in r["seeds"]] for r in rows if r["seeds"]}
    return {a: {b: welch(top1[a], top1[b]) for b in top1 if b != a} for a in top1}


def _environment(plan, rows):
    from ..bench.report import environment
    env = environment(plan["device"])
    env["threads"] = plan["threads"]
    env["precision"] = sorted({s["precision"] for r in rows for s in r["seeds"]})
    return env
