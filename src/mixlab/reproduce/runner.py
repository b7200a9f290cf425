"""Plan and run a paper table: one ordinary training run per (dataset, model, seed), then the report.

Layout: `OUT/<dataset>/<model>/seed<k>/`, each a normal `mixlab train` run directory. Rerunning the same
command reads completed runs' `summary.json`, resumes partial ones through the engine (`resume=DIR`), and
trains the rest, so an interrupted reproduction continues where it stopped. A dataset that is not available
offline is skipped with the data package's one-line reason; a run that fails is reported and the others go on.
"""
import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from ..registry import list_models
from ..decision import decide
from ..fileio import check_writable, first_line, safe_name
from ..rundir import RunDir
from .kinds import PlannedRun, ReproduceOptions, TableJob, table_kind
from .status import run_status
from .tables import dataset_candidates, get_table, load_published, paper_dataset, select


def augmentation_of(rundir):
    """The training (and, if any, test-time) augmentation a run's recorded recipe applied, in words."""
    try:
        recipe = rundir.read_config(need=("recipe",))["recipe"]
    except ValueError:
        return None
    parts = ([f"random crop (pad {recipe.get('crop_padding')})"] if recipe.get("crop_padding") else []) + \
        (["horizontal flip"] if recipe.get("flip") else [])
    text = " + ".join(parts) or "none"
    return text + (" (also on the test images: official quirk)" if recipe.get("test_augment") else "")


def default_out(table, recipe, overrides=None):
    """runs/reproduce/<table>, plus -<recipe> when it is not the table's own and -key=value per override."""
    spec = get_table(table)
    parts = [table] + ([] if recipe == spec.recipe else [recipe])
    parts += [f"{k}={json.dumps(v).replace(' ', '')}" for k, v in sorted((overrides or {}).items())]
    # a recipe file's name or an override value with '/' or '..' must not move the output out of runs/
    return Path("runs", "reproduce", safe_name("-".join(parts), "the default output folder"))


def resolve_datasets(names, probe):
    """[(paper name, our dataset)] and [{'dataset', 'reason'}] skipped; `probe(name)` raises when absent.

    The paper's name tries our candidates in order (CIFAR-10: lossless first, then the lossy JPEG copy); when
    none is available the first candidate's error is the reason, e.g. the data package's hint for CIFAR-100.
    """
    found, skipped = [], []
    for name in names:
        first_error = None
        for candidate in dataset_candidates(name):
            try:
                probe(candidate)
            except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
                message = first_line(e)
                first_error = first_error or (message if message.startswith(candidate) else
                                              f"{candidate}: {message}")
                continue
            found.append((paper_dataset(candidate), candidate))
            break
        else:
            skipped.append({"dataset": name, "reason": first_error})
    return found, skipped


def scaled_milestones(milestones, epochs, recipe_epochs):
    """Step-schedule milestones shrunk with an `--epochs` budget so the schedule keeps its shape."""
    if not milestones or epochs >= recipe_epochs:
        return list(milestones or [])
    scaled = []
    for m in milestones:
        s = max(1, round(m * epochs / recipe_epochs))
        if s < epochs and (not scaled or s > scaled[-1]):
            scaled.append(s)
    return scaled


def model_recipe(table, model, recipe, epochs, load_recipe, extra=None):
    """(epochs, recipe overrides, the recipe's own epochs) for one model of the table.

    The table's per-model settings apply under the table's own recipe only; `extra` (the user's `--set`)
    comes last and is never rescaled.
    """
    spec = get_table(table)
    base = load_recipe(recipe)
    own = dict(spec.model_overrides.get(model, {})) if base.name == spec.recipe else {}
    recipe_epochs = int(own.pop("epochs", base.epochs))
    run_epochs = int(epochs) if epochs is not None else recipe_epochs
    if run_epochs < 1:
        raise ValueError(f"--epochs must be positive, got {run_epochs}")
    if base.schedule == "multistep":
        own["milestones"] = scaled_milestones(own.get("milestones", base.milestones), run_epochs, recipe_epochs)
    own.update(extra or {})
    return run_epochs, own, recipe_epochs


def dataset_recipe(table, dataset, recipe, load_recipe):
    """The table's recipe keys for one of our datasets (under the table's own recipe only)."""
    spec = get_table(table)
    return dict(spec.dataset_overrides.get(dataset, {})) if load_recipe(recipe).name == spec.recipe else {}


def plan(table, out, datasets, models, seeds, recipe, epochs, load_recipe, extra=None):
    """Every run of the table, in order (dataset, model, seed), with its status on disk."""
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    runs = []
    for _, ours in datasets:
        for model in models:
            # the user's --set comes last, over the table's per-dataset and per-model settings
            extra_here = {**dataset_recipe(table, ours, recipe, load_recipe), **(extra or {})}
            run_epochs, overrides, recipe_epochs = model_recipe(table, model, recipe, epochs, load_recipe,
                                                                extra_here)
            arch, model_kwargs = get_table(table).arch_of(model)
            for seed in range(seeds):
                path = Path(out, ours, model, f"seed{seed}")
                runs.append(PlannedRun(model, ours, seed, path, run_epochs, overrides, run_status(path), arch,
                                       model_kwargs, recipe_epochs))
    return runs


def final_result(summary):
    """A finished run's result in words: top-1 for a classifier, mIoU for a segmenter, test loss for a denoiser."""
    if summary.get("test_miou") is not None:
        return f"final test mIoU {summary['test_miou']:.2f}%"
    if summary.get("test_top1") is None and summary.get("test_loss") is not None:
        return f"final test loss {summary['test_loss']:.4f}"
    return f"final test top-1 {summary['test_top1']:.2f}%"


def execute(job: TableJob) -> tuple[dict, list[dict]]:
    """Train or resume every run of `job` not done, through its launcher (launch.py; default: one after another
    in this process); (summaries by (model, dataset) in plan order, failures)."""
    from ..train import TrainConfig
    from .launch import Sequential

    runs, opts, log = job.runs, job.options, job.options.log
    failed, summaries, jobs = {}, {}, []
    for i, run in enumerate(runs):
        if run.status == "foreign":
            failed[i] = {"model": run.model, "dataset": run.dataset, "seed": run.seed,
                         "error": f"{RunDir(run.path).describe()}; move it away or pass another --out"}
            log(f"    skipped: {failed[i]['error']}")
            continue
        cfg = TrainConfig(model=run.arch or run.model, model_kwargs=dict(run.model_kwargs), data=run.dataset,
                          recipe=job.recipe, epochs=run.epochs, batch_size=opts.batch_size, subset=opts.subset,
                          device=opts.device, out=str(run.path), seed=run.seed, data_dir=opts.data_dir,
                          compile=opts.compile, overrides=dict(run.overrides), trackers=tuple(opts.trackers),
                          overwrite=opts.overwrite, **job.spec.train_keys)
        # one owner decides (decision.py): a finished run of this very request is reused, an unfinished one
        # resumed; a run of another request (epochs, subset, recipe values…) is refused before anything trains
        decision = decide(RunDir(run.path), cfg, reuse=True)
        if decision.action == "reuse":
            summaries[i] = decision.summary
            continue
        if decision.note:
            log(decision.note)
        jobs.append((i, decision.config))
    launcher = opts.launcher or Sequential(job.train_fn)
    if getattr(launcher, "train_fn", None) is None:
        launcher.train_fn = job.train_fn
    if jobs and not isinstance(launcher, Sequential):
        log(f"{len(jobs)} runs to train: {launcher.describe()}")
    started = []

    configs = dict(jobs)

    def on_start(i):
        run = runs[i]
        started.append(i)
        action = "training again" if configs[i].overwrite else "resuming" if runs[i].status == "partial" else "training"
        log(f"[{len(started)}/{len(jobs)}] {action} {run.model} on {run.dataset} seed {run.seed} "
            f"({run.epochs} epochs) -> {run.path}")

    def on_done(i, outcome):
        run = runs[i]
        kind, value = outcome
        if kind == "ok":
            summaries[i] = value
            log(f"    {'' if isinstance(launcher, Sequential) else run.path.as_posix() + ': '}{final_result(value)}"
                f"  ({value.get('train_seconds', 0):.0f} s)")
        else:
            failed[i] = {"model": run.model, "dataset": run.dataset, "seed": run.seed, "error": value}
            log(f"    {'' if isinstance(launcher, Sequential) else run.path.as_posix() + ': '}failed: {value}")

    launcher.map(jobs, on_start, on_done)
    results = {}
    for i, run in enumerate(runs):   # plan order, whatever order the runs finished in
        if i in summaries:
            summary = dict(summaries[i], augmentation=augmentation_of(RunDir(run.path)))
            results.setdefault((run.model, run.dataset), []).append(summary)
    return results, [failed[i] for i in sorted(failed)]


def reproduce(table: str, options: ReproduceOptions | None = None, **fields: Any) -> dict:
    """Run (or with `dry_run`, only plan) a paper table; returns the report dict (rows, claims, skipped, …).

    `options` (a `ReproduceOptions`) and/or its fields as keywords, e.g. `reproduce("ninformer", seeds=3)`.
    Writes `OUT/<table>.json` and `OUT/<table>.md` (and copies to `json_path` / `markdown_path`). The grid of
    runs (dataset × model × seed) is planned and trained here for every table alike; the table's kind
    (kinds.py: classification top-1 beside the published numbers, or diffusion Fréchet distances) adds its
    own runs and makes the rows, claims and markdown.
    """
    from ..train import load_recipe

    opts = dataclasses.replace(options or ReproduceOptions(), **fields)
    spec = get_table(table)
    recipe = opts.recipe or spec.recipe
    base = load_recipe(recipe)   # unknown recipe or override key/value: one clear line before anything runs
    recipe_name, overrides = base.name, dict(opts.overrides or {})
    base.replace(where="--set", **overrides)
    models = select(spec.models, opts.models, "model")
    missing = [spec.arch_of(m)[0] for m in models if spec.arch_of(m)[0] not in list_models()]
    if missing:
        raise ValueError(f"model(s) {', '.join(missing)} of the {table} table are not registered in this mixlab")
    names = select(spec.datasets, opts.datasets, "dataset")
    if opts.out is not None and not str(opts.out).strip():
        raise ValueError("--out '' names no folder: give a directory for the table's runs")
    out = Path(opts.out) if opts.out else default_out(table, recipe_name, overrides)
    probe = opts.probe or table_kind(spec.task).data_probe(opts.data_dir) or _data_probe(opts.data_dir)
    found, skipped = resolve_datasets(names, probe)
    for s in skipped if not opts.dry_run else ():
        opts.log(f"skipping {s['dataset']}: {s['reason']}")
    runs = plan(table, out, found, models, opts.seeds, recipe, opts.epochs, load_recipe, overrides)
    report = {"table": table, "title": spec.title, "recipe": recipe_name, "out": str(out), "subset": opts.subset,
              "overrides": overrides,
              "runs": [{"model": r.model, "arch": r.arch, "model_kwargs": r.model_kwargs, "dataset": r.dataset,
                        "seed": r.seed, "epochs": r.epochs, "status": r.status, "path": str(r.path),
                        "overrides": r.overrides} for r in runs],
              "skipped": skipped}
    job = TableJob(table, spec, opts, out, found, models, recipe, recipe_name, overrides, runs, skipped)
    kind = table_kind(spec.task)(job)   # refuses options it cannot honour before anything runs
    report["runs"] += kind.extra_runs()
    if opts.dry_run:
        report.update(kind.plan_rows())
        return report
    for path in (out / f"{table}.json", out / f"{table}.md", opts.json_path, opts.markdown_path):
        if path:   # a report that cannot be written must fail now, not after hours of training
            check_writable(path)
    if opts.train_fn is None:
        from ..train import train as train_fn
    else:
        train_fn = opts.train_fn
    job.train_fn = train_fn
    results, failed = execute(job)
    report.update(kind.rows(results, failed))
    report.update(kind.claims(report["rows"]))
    report.update(failed=failed, metric=kind.metric,
                  notes=[n for n in (spec.note, load_published()["not_retrieved"].get(table)) if n],
                  date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), command=opts.command,
                  versions=_versions())
    report["markdown"] = kind.markdown(report)
    _write(report, out / f"{table}.json", out / f"{table}.md", opts.json_path, opts.markdown_path)
    return report


def _data_probe(data_dir):
    def probe(name):
        from ..data import load_dataset
        load_dataset(name, split="test", data_dir=data_dir, verbose=False)
    return probe


def _versions():
    import platform

    import torch

    from .. import __version__
    return {"mixlab": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _write(report, json_out, md_out, json_path, markdown_path):
    from ..checkpoint import atomic_write, write_json
    data = {k: v for k, v in report.items() if k != "markdown"}
    for path in dict.fromkeys(p for p in (json_out, json_path) if p):
        write_json(path, data)
    for path in dict.fromkeys(p for p in (md_out, markdown_path) if p):
        atomic_write(path, lambda tmp: Path(tmp).write_text(report["markdown"], encoding="utf-8"))
    report["written"] = [str(p) for p in (json_out, md_out, json_path, markdown_path) if p]
