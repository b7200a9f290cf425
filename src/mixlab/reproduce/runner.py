"""Plan and run a paper table: one ordinary training run per (dataset, model, seed), then the report.

Layout: `OUT/<dataset>/<model>/seed<k>/`, each a normal `mixlab train` run directory. Rerunning the same
command reads completed runs' `summary.json`, resumes partial ones through the engine (`resume=DIR`), and
trains the rest, so an interrupted reproduction continues where it stopped. A dataset that is not available
offline is skipped with the data package's one-line reason; a run that fails is reported and the others go on.
"""
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..registry import list_models
from ..decision import decide
from ..fileio import check_writable, safe_name
from ..rundir import RunDir
from .plot import row_gflops
from .report import answer_questions, build_row, check_claims, render_markdown
from .status import run_status
from .tables import dataset_candidates, get_table, load_published, paper_dataset, select


@dataclass
class PlannedRun:
    model: str            # the table's row label (a registered model, or a variant of one)
    dataset: str          # ours (e.g. cifar10-jpeg)
    seed: int
    path: Path
    epochs: int
    overrides: dict = field(default_factory=dict)
    status: str = "new"   # new | partial | done | foreign
    arch: str = None      # the registered model the row trains (None: `model` itself)
    model_kwargs: dict = field(default_factory=dict)


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
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
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
            run_epochs, overrides, _ = model_recipe(table, model, recipe, epochs, load_recipe, extra_here)
            arch, model_kwargs = get_table(table).arch_of(model)
            for seed in range(seeds):
                path = Path(out, ours, model, f"seed{seed}")
                runs.append(PlannedRun(model, ours, seed, path, run_epochs, overrides, run_status(path), arch,
                                       model_kwargs))
    return runs


def final_result(summary):
    """A finished run's result in words: top-1 for a classifier, test loss for a denoiser."""
    if summary.get("test_top1") is None and summary.get("test_loss") is not None:
        return f"final test loss {summary['test_loss']:.4f}"
    return f"final test top-1 {summary['test_top1']:.2f}%"


def execute(runs, recipe, recipe_name, subset, device, batch_size, data_dir, compile, train_fn, log, launcher=None,
            trackers=(), overwrite=False):
    """Train or resume every run not done, through `launcher` (launch.py; default: one after another in this
    process); (summaries by (model, dataset) in plan order, failures)."""
    from ..train import TrainConfig
    from .launch import Sequential

    failed, summaries, jobs = {}, {}, []
    for i, run in enumerate(runs):
        if run.status == "foreign":
            failed[i] = {"model": run.model, "dataset": run.dataset, "seed": run.seed,
                         "error": f"{RunDir(run.path).describe()}; move it away or pass another --out"}
            log(f"    skipped: {failed[i]['error']}")
            continue
        cfg = TrainConfig(model=run.arch or run.model, model_kwargs=dict(run.model_kwargs), data=run.dataset,
                          recipe=recipe, epochs=run.epochs, batch_size=batch_size, subset=subset, device=device,
                          out=str(run.path), seed=run.seed, data_dir=data_dir, compile=compile,
                          overrides=dict(run.overrides), trackers=tuple(trackers),
                          overwrite=overwrite)
        # one owner decides (decision.py): a finished run of this very request is reused, an unfinished one
        # resumed; a run of another request (epochs, subset, recipe values…) is refused before anything trains
        decision = decide(RunDir(run.path), cfg, reuse=True)
        if decision.action == "reuse":
            summaries[i] = decision.summary
            continue
        if decision.note:
            log(decision.note)
        jobs.append((i, decision.config))
    launcher = launcher or Sequential(train_fn)
    if getattr(launcher, "train_fn", None) is None:
        launcher.train_fn = train_fn
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


def reproduce(table, datasets=None, models=None, seeds=1, epochs=None, recipe=None, out=None, subset=None,
              device="auto", batch_size=None, data_dir=None, compile=False, dry_run=False, json_path=None,
              markdown_path=None, overrides=None, plot=False, command=None, log=print, train_fn=None, probe=None,
              cost_fn=None, fid="auto", fid_samples=None, launcher=None, trackers=(), overwrite=False):
    """Run (or with `dry_run`, only plan) a paper table; returns the report dict (rows, claims, skipped, …).

    Writes `OUT/<table>.json` and `OUT/<table>.md` (and copies to `json_path` / `markdown_path`).
    `train_fn` and `probe` default to the engine's `train` and a test-split load of the dataset; `plot` adds
    top-1 against forward FLOPs (`cost_fn(model, dataset) -> (cost, unit)`, default the bench FLOP counter).
    A diffusion table (dia-diffusion) scores its runs by Fréchet distance after they finish (reproduce/diffusion.py):
    `fid` auto | inception | classifier picks the feature space, `fid_samples` caps the samples per run.
    `trackers` (mixlab.track names) log every run to those experiment trackers too.
    `overwrite` trains again a run whose directory holds another request's run (refused without it).
    """
    from ..train import load_recipe

    spec = get_table(table)
    recipe = recipe or spec.recipe
    base = load_recipe(recipe)   # unknown recipe or override key/value: one clear line before anything runs
    recipe_name, overrides = base.name, dict(overrides or {})
    base.replace(where="--set", **overrides)
    models = select(spec.models, models, "model")
    missing = [spec.arch_of(m)[0] for m in models if spec.arch_of(m)[0] not in list_models()]
    if missing:
        raise ValueError(f"model(s) {', '.join(missing)} of the {table} table are not registered in this mixlab")
    names = select(spec.datasets, datasets, "dataset")
    if out is not None and not str(out).strip():
        raise ValueError("--out '' names no folder: give a directory for the table's runs")
    out = Path(out) if out else default_out(table, recipe_name, overrides)
    if probe is None:
        probe = _data_probe(data_dir)
    found, skipped = resolve_datasets(names, probe)
    for s in skipped if not dry_run else ():
        log(f"skipping {s['dataset']}: {s['reason']}")
    runs = plan(table, out, found, models, seeds, recipe, epochs, load_recipe, overrides)
    report = {"table": table, "title": spec.title, "recipe": recipe_name, "out": str(out), "subset": subset,
              "overrides": overrides,
              "runs": [{"model": r.model, "arch": r.arch, "model_kwargs": r.model_kwargs, "dataset": r.dataset,
                        "seed": r.seed, "epochs": r.epochs, "status": r.status, "path": str(r.path),
                        "overrides": r.overrides} for r in runs],
              "skipped": skipped}
    if spec.task == "diffusion":   # the FID feature space, and the classifiers that provide one, are planned too
        from . import diffusion
        if plot:
            raise ValueError(f"--plot draws top-1 against FLOPs; the {table} table reports Fréchet distances")
        fid_plan = diffusion.fid_plan(out, found, fid)
        report["runs"] += diffusion.classifier_runs(fid_plan)
    if dry_run:
        return report
    for path in (out / f"{table}.json", out / f"{table}.md", json_path, markdown_path):
        if path:   # a report that cannot be written must fail now, not after hours of training
            check_writable(path)
    if train_fn is None:
        from ..train import train as train_fn
    results, failed = execute(runs, recipe, recipe_name, subset, device, batch_size, data_dir, compile,
                              train_fn, log, launcher, trackers=trackers, overwrite=overwrite)
    published = load_published()
    if spec.task == "diffusion":   # rows are Fréchet distances of the finished runs' samples
        recipe_epochs = {m: model_recipe(table, m, recipe, epochs, load_recipe, overrides)[2] for m in models}
        report.update(diffusion.diffusion_results(
            table, runs, results, failed, found, models, fid_plan, recipe_name, recipe_epochs, subset, device,
            data_dir, compile, train_fn, log, **({"fid_samples": fid_samples} if fid_samples else {})))
        report.update(notes=[n for n in (spec.note, published["not_retrieved"].get(table)) if n],
                      date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), command=command,
                      versions=_versions())
        report["markdown"] = diffusion.render_markdown(table, report["rows"], report["fid"], skipped,
                                                       report["failed"], report["claims"], overrides)
        _write(report, out / f"{table}.json", out / f"{table}.md", json_path, markdown_path)
        return report
    rows = []
    for _, ours in found:
        for model in models:
            summaries = results.get((model, ours))
            if summaries:
                _, _, recipe_epochs = model_recipe(table, model, recipe, epochs, load_recipe, overrides)
                row = build_row(table, model, ours, recipe_name, summaries, published, recipe_epochs)
                row["arch"], row["model_kwargs"] = spec.arch_of(model)
                row["gflops"] = row_gflops(row["arch"], row["model_kwargs"], ours)
                rows.append(row)
    claims = check_claims(table, rows)
    report.update(rows=rows, claims=claims, questions=answer_questions(table, rows), failed=failed,
                  metric="final-epoch test top-1 (%)",
                  notes=[n for n in (spec.note, published["not_retrieved"].get(table)) if n],
                  date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), command=command,
                  versions=_versions())
    if plot and rows:
        from .plot import plot_accuracy_vs_cost
        png = out / f"{table}-accuracy-vs-flops.png"
        costs, unit = plot_accuracy_vs_cost(rows, png, title=spec.title, **({"cost_fn": cost_fn} if cost_fn else {}))
        report.update(plot=str(png), cost_unit=unit)
        for r in rows:
            r["cost"] = costs.get((r["model"], r["dataset"]))
    report["markdown"] = render_markdown(table, rows, skipped, failed, claims, overrides, report["questions"])
    _write(report, out / f"{table}.json", out / f"{table}.md", json_path, markdown_path)
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
