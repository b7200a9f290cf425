"""The diffusion table kind (kinds.py; `TableSpec.task == "diffusion"`, e.g. `dia-diffusion`): after the UNet
runs, the Fréchet distance of each run's samples against the test split, then rows, claims and markdown.

Feature space, chosen once per table (`fid`):
- `inception` (FID proper) when torch-fidelity is installed and its weights are local or downloadable
  (`mixlab.diffusion.inception_status`, which never downloads by itself);
- otherwise (or with fid="classifier") the pre-logit features of a mixlab classifier trained on the same
  dataset: `CLASSIFIER` (a 20-layer CIFAR ResNet, 256-d features, a fixed 15-epoch recipe) trained as an
  ordinary run directory `OUT/<dataset>/_fid_classifier/`, so it resumes, and is reused, like every run.
  The report says why Inception was not used, and the row names its feature space.

Per finished run: n = min(FID_SAMPLES, test images) samples from its `last.safetensors` (the final EMA
weights) with the recipe's sample_steps, seed FID_SEED + the run's seed, scored against the whole test split
(the same `--subset`, chosen with seed 0, for every row). The result is cached in the run's
`samples/fid.json`, keyed by the weights' sha256, the feature space (for a classifier, its weights' sha256),
the real set, n, seed and steps, so a rerun neither trains nor samples again.
"""
import json
from pathlib import Path

from ..decision import decide
from ..fileio import file_sha256, first_line
from ..rundir import RunDir
from .kinds import TableKind
from .report import _one, bullet_notes, mean_std, outcome_notes, paired_rows, recipes_cell
from .status import run_status
from .tables import DATASET_LABELS, TABLES, load_published, paper_dataset

FID_MODES = ("auto", "inception", "classifier")
FID_SAMPLES = 10_000
FID_SEED = 1000                 # + the run's seed: apart from the training grids' seed
CLASSIFIER_DIR = "_fid_classifier"
# A plain CIFAR ResNet (bottleneck, 2 blocks a stage, 256-d pre-logits), no DIA: a feature space that favours
# none of the compared UNets. DIANet's SGD recipe, shortened to 15 epochs (lr x0.1 at 8 and 12).
CLASSIFIER = dict(model="resnet164", model_kwargs={"depth": 20}, recipe="dianet", epochs=15,
                  overrides={"milestones": [8, 12]})


def fid_plan(out, found, fid="auto", inception_status=None):
    """{our dataset: {'space': 'inception' | 'classifier', 'why', 'weights' | 'classifier' (run dir)}}."""

    if fid not in FID_MODES:
        raise ValueError(f"fid must be one of {', '.join(FID_MODES)}, got {fid!r}")
    if fid == "classifier":
        usable, weights, why = False, None, "the classifier feature space was asked for"
    else:
        if inception_status is None:
            from ..diffusion.fid import inception_status
        usable, weights, why = inception_status()
        if fid == "inception" and not usable:
            raise ValueError(f"Inception FID cannot run here: {why}; use fid='classifier'")
        if not usable:
            why = f"Inception FID unavailable ({why})"
    plan = {}
    for _, ours in found:
        if usable:
            plan[ours] = {"space": "inception", "weights": weights, "why": why}
        else:
            path = Path(out, ours, CLASSIFIER_DIR)
            plan[ours] = {"space": "classifier", "why": why, "classifier": str(path), "status": run_status(path)}
    return plan


def classifier_runs(plan):
    """The feature classifiers as entries of the report's run list (what --dry-run prints)."""
    return [{"model": CLASSIFIER["model"], "dataset": ours, "seed": 0, "epochs": CLASSIFIER["epochs"],
             "status": p["status"], "path": p["classifier"], "overrides": dict(CLASSIFIER["overrides"]),
             "model_kwargs": dict(CLASSIFIER["model_kwargs"]), "role": "FID feature space"}
            for ours, p in plan.items() if p["space"] == "classifier"]


def ensure_classifier(path, dataset, subset, device, data_dir, compile, train_fn, log):
    """Train, resume or reuse the feature classifier at `path`; returns its summary."""
    from ..train import TrainConfig

    if run_status(path) == "foreign":
        raise ValueError(f"{RunDir(path).describe()}; move it away or pass another --out")
    cfg = TrainConfig(model=CLASSIFIER["model"], data=dataset, recipe=CLASSIFIER["recipe"],
                      epochs=CLASSIFIER["epochs"], subset=subset, device=device, out=str(path), seed=0,
                      data_dir=data_dir, compile=compile, model_kwargs=dict(CLASSIFIER["model_kwargs"]),
                      overrides=dict(CLASSIFIER["overrides"]))
    decision = decide(RunDir(path), cfg, reuse=True)   # another request's classifier: refused in one line
    if decision.action == "reuse":
        return decision.summary
    log(f"{'resuming' if decision.config.resume else 'training'} the FID feature classifier {CLASSIFIER['model']} "
        f"{json.dumps(CLASSIFIER['model_kwargs'])} on {dataset} ({CLASSIFIER['epochs']} epochs) -> {path}")
    cfg = decision.config
    return train_fn(cfg)


class _Scorer:
    """One dataset's Fréchet distance: feature extractor and real statistics, built on first use only."""

    def __init__(self, dataset, entry, subset, device, data_dir):
        self.dataset, self.entry, self.subset, self.device, self.data_dir = dataset, entry, subset, device, data_dir
        self._fd = None
        self._real = None
        if entry["space"] == "classifier":
            self.space_id = f"classifier {file_sha256(Path(entry['classifier']) / 'last.safetensors')}"
        else:
            self.space_id = "inception"

    @property
    def real(self):
        if self._real is None:
            from ..data import load_dataset
            self._real = load_dataset(self.dataset, split="test", data_dir=self.data_dir, subset=self.subset,
                                      seed=0, verbose=False)
        return self._real

    @property
    def real_id(self):
        return f"{self.dataset} test, subset {self.subset}"

    def fd(self):
        if self._fd is None:
            from ..diffusion.fid import ClassifierFeatures, FrechetDistance
            if self.entry["space"] == "classifier":
                features = ClassifierFeatures.from_run(self.entry["classifier"], weights="last.safetensors",
                                                       map_location=self.device)
                self._fd = FrechetDistance(features, device=self.device, sync=False)
            else:
                self._fd = FrechetDistance("inception", device=self.device, inception_weights=self.entry["weights"],
                                           sync=False)
            self._fd.add_real(self.real.images)
        return self._fd


def run_fid(path, seed, scorer, n_max, device, log):
    """{'fid', 'feature_space', 'n_real', 'n_fake', 'sample_steps', 'seed'} of one finished run (cached)."""
    from ..fileio import write_json
    from ..diffusion.runs import load_denoiser

    run = RunDir(path)
    recipe = run.read_config(need=("recipe",))["recipe"]
    steps = recipe.get("sample_steps") or recipe.get("diffusion_timesteps")
    n = min(n_max, len(scorer.real))
    key = {"weights_sha256": file_sha256(run / "last.safetensors"), "space": scorer.space_id, "real": scorer.real_id,
           "n": n, "seed": FID_SEED + seed, "sample_steps": steps}
    cache = run / "samples" / "fid.json"
    try:
        saved = json.loads(cache.read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("key") == key:
        return saved["result"]
    fd = scorer.fd()
    model, process, precision, _ = load_denoiser(path, "last", device)
    log(f"    sampling {n} images from {path} ({process.sample_steps} reverse steps) for the Fréchet distance")
    images = process.sample(model, n, seed=FID_SEED + seed, batch_size=1000 if model_on_cuda(model) else 250,
                            autocast=precision.autocast)
    result = dict(fd.score(images), sample_steps=process.sample_steps, seed=FID_SEED + seed)
    write_json(cache, {"key": key, "result": result})
    return result


def model_on_cuda(model):
    return next(model.parameters()).device.type == "cuda"


class DiffusionTable(TableKind):
    """Rows of Fréchet distances (and final test loss) per model and dataset; the feature classifiers are its
    extra runs; claims read "lower FD is better". `fid` and `fid_samples` of the options apply here; `plot`
    (top-1 against FLOPs) does not."""
    metric = ("Fréchet distance of samples vs the test split (lower is better), in the feature space named per "
              "dataset; final-epoch test loss")

    def __init__(self, job):
        super().__init__(job)
        if job.options.plot:
            raise ValueError(f"--plot draws top-1 against FLOPs; the {job.table} table reports Fréchet distances")
        # the FID feature space, and the classifiers that provide one, are planned with the grid
        self.fid_plan = fid_plan(job.out, job.found, job.options.fid)

    def extra_runs(self):
        return classifier_runs(self.fid_plan)

    def rows(self, results, failed):
        job = self.job
        fids, spaces = score_runs(job, self.fid_plan, results, failed, job.options.fid_samples or FID_SAMPLES)
        rows = []
        for _, ours in job.found:
            for model in job.models:
                summaries = results.get((model, ours))
                if summaries:
                    per_seed = [fids.get((model, ours, s.get("seed"))) for s in summaries]
                    rows.append(build_row(job.table, model, ours, job.recipe_name, summaries, per_seed,
                                          spaces.get(ours, {}), job.recipe_epochs(model)))
        return {"rows": rows, "fid": spaces}

    def claims(self, rows):
        return {"claims": check_claims(self.job.table, rows)}

    def markdown(self, report):
        return render_markdown(self.job.table, report["rows"], report["fid"], report["skipped"], report["failed"],
                               report["claims"], report["overrides"])


def score_runs(job, plan, results, failed, fid_samples=FID_SAMPLES):
    """After the runs: feature classifiers, then the Fréchet distance of each finished run's samples.
    ({(model, dataset, seed): fid result}, {dataset: feature-space entry}); failures are appended to `failed`."""
    from ..device import pick_device

    opts, log = job.options, job.options.log
    device = str(pick_device(opts.device))
    scorers, spaces = {}, {}
    for _, ours in job.found:
        if not any(r.dataset == ours and (r.model, ours) in results for r in job.runs):
            continue
        entry = dict(plan[ours])
        try:
            if entry["space"] == "classifier":
                clf = ensure_classifier(Path(entry["classifier"]), ours, opts.subset, device, opts.data_dir,
                                        opts.compile, job.train_fn, log)
                entry["classifier_top1"] = clf.get("test_top1")
            scorers[ours] = _Scorer(ours, entry, opts.subset, device, opts.data_dir)
        except Exception as e:   # noqa: BLE001 (reported; the rows of this dataset have no FD)
            failed.append({"model": f"{CLASSIFIER['model']} (FID features)", "dataset": ours, "seed": 0,
                           "error": first_line(e)})
            log(f"    failed: {failed[-1]['error']}")
        spaces[ours] = entry
    fids = {}
    for run in job.runs:
        if (run.model, run.dataset) not in results or run.dataset not in scorers:
            continue
        if not any(s.get("seed") == run.seed for s in results[(run.model, run.dataset)]):
            continue
        try:
            fids[(run.model, run.dataset, run.seed)] = run_fid(run.path, run.seed, scorers[run.dataset],
                                                               fid_samples, device, log)
        except Exception as e:   # noqa: BLE001 (one run's sampling must not stop the table; reported)
            failed.append({"model": run.model, "dataset": run.dataset, "seed": run.seed,
                           "error": "Fréchet distance: " + first_line(e)})
            log(f"    failed: {failed[-1]['error']}")
    for ours, entry in spaces.items():
        scored = [f for (m, d, s), f in fids.items() if d == ours]
        entry["feature_space"] = scored[0]["feature_space"] if scored else None
    return fids, spaces


def build_row(table, model, dataset, recipe, summaries, fids, space, recipe_epochs=None):
    """One row from the runs' summaries and their Fréchet distances (one per seed, None where missing)."""
    what = f"{model} on {dataset}"
    if not summaries:
        raise ValueError(f"{what}: no completed runs to aggregate")
    epochs, subset = _one(summaries, "epochs", what), _one(summaries, "subset", what)
    precision = _one(summaries, "precision", what)
    scored = [f["fid"] for f in fids if f is not None]
    fid_mean, fid_std = mean_std(scored) if scored else (None, None)
    loss_mean, loss_std = mean_std([s["test_loss"] for s in summaries])
    seconds = [float(s.get("train_seconds") or 0.0) for s in summaries]
    lossy = bool(any(s.get("lossy") for s in summaries)) or paper_dataset(dataset) != dataset
    first = next((f for f in fids if f is not None), {})
    return {
        "model": model, "dataset": dataset, "recipe": recipe, "precision": precision, "epochs": epochs,
        "seeds": len(summaries),
        "fid_mean": None if fid_mean is None else round(fid_mean, 4),
        "fid_std": None if fid_std is None else round(fid_std, 4),
        "fid_per_seed": [None if f is None else round(f["fid"], 4) for f in fids],
        "feature_space": first.get("feature_space") or space.get("feature_space"),
        "fid_space": space.get("space"), "fid_samples": first.get("n_fake"), "fid_real": first.get("n_real"),
        "sample_steps": first.get("sample_steps"),
        "test_loss_mean": round(loss_mean, 6), "test_loss_std": None if loss_std is None else round(loss_std, 6),
        "test_loss_per_seed": [round(float(s["test_loss"]), 6) for s in summaries],
        "published": None, "params": summaries[0].get("params"),
        "train_seconds": round(sum(seconds) / len(seconds), 2), "train_seconds_total": round(sum(seconds), 2),
        "device": ", ".join(sorted({str(s.get("device")) for s in summaries})),
        "collapsed": False, "seed_values": [s.get("seed") for s in summaries],
        "paper_dataset": paper_dataset(dataset), "lossy": lossy, "subset": subset,
        "budget": recipe_epochs is not None and epochs is not None and epochs < recipe_epochs,
        "recipe_epochs": recipe_epochs,
        "metric": "Fréchet distance (lower is better); final-epoch test loss",
    }


def check_claims(table, rows):
    """Each (better, worse) pair per dataset where both have a Fréchet distance: is better's FD lower?"""
    return [{"dataset": dataset, "better": a["model"], "worse": b["model"], "margin": round(-difference, 4),
             "holds": difference < 0, "within_noise": abs(difference) <= spread, "metric": "fid",
             "values": [a["fid_mean"], b["fid_mean"]]}      # margin > 0: better's samples are closer to the data
            for dataset, _, a, b, difference, spread in paired_rows(rows, TABLES[table].claims, "fid")]


def _fmt(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _label(dataset):
    return DATASET_LABELS.get(dataset, dataset)


def render_markdown(table, rows, spaces, skipped=(), failed=(), claims=(), overrides=None):
    """The diffusion table as GitHub markdown: FD and test loss per model, the feature space per dataset."""
    spec = TABLES[table]
    lines = [f"### {spec.title}", ""]
    if rows:
        recipes = recipes_cell(rows, overrides)
        lines += [f"Recipe {recipes}. FD = Fréchet distance between samples of the final EMA weights and the test "
                  "split, in the feature space named below for each dataset (lower is better; not an Inception "
                  "FID unless it says so); test loss = final-epoch DDPM L_simple on the test split; mean ± "
                  "sample std over seeds.", ""]
        lines += ["| model | dataset | precision | epochs | seeds | FD ↓ | features | samples × steps "
                  "| test loss ↓ | published FID | params | s/run | device |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fd = _fmt(r["fid_mean"], 2) + ("" if r["fid_std"] is None else f" ± {r['fid_std']:.2f}")
        loss = _fmt(r["test_loss_mean"], 4) + ("" if r["test_loss_std"] is None else f" ± {r['test_loss_std']:.4f}")
        epochs = f"{r['epochs']}" + (f" of {r['recipe_epochs']} ‡" if r["budget"] else "")
        if r["subset"]:
            epochs += f" (subset {r['subset']})"
        features = {"inception": "Inception", "classifier": "mixlab classifier"}.get(r["fid_space"], "n/a")
        samples = f"{r['fid_samples']} × {r['sample_steps']}" if r["fid_samples"] else "n/a"
        params = f"{r['params']:,}" if isinstance(r["params"], int) else "n/a"
        dataset = _label(r["dataset"]) + (" †" if r["lossy"] else "")
        lines.append(f"| {r['model']} | {dataset} | {r.get('precision') or 'n/a'} | {epochs} | {r['seeds']} | {fd} | "
                     f"{features} | {samples} | {loss} | n/a | {params} | {r['train_seconds']:.1f} | {r['device']} |")
    notes = []
    for dataset, s in spaces.items():
        if s.get("space") == "classifier":
            top1 = s.get("classifier_top1")
            top1 = f", its test top-1 {top1:.2f}%" if isinstance(top1, (int, float)) else ""
            notes.append(f"features for {_label(dataset)}: {s.get('feature_space') or 'mixlab classifier'} (run "
                         f"{s['classifier']}{top1}). {s['why']}: this Fréchet distance is not an FID; compare it "
                         f"only between rows of this dataset, never with Inception FIDs.")
        elif s.get("space") == "inception":
            notes.append(f"features for {_label(dataset)}: {s.get('feature_space') or 'Inception'} (FID proper; "
                         f"{s['why']}).")
    if any(r["lossy"] for r in rows):
        notes.append("† lossy JPEG copy of CIFAR-10 (quality 75, 4:2:0 chroma): trained and scored on these images.")
    if any(r["budget"] for r in rows):
        notes.append("‡ shorter than the recipe's schedule (`--epochs` budget): not the recipe's setting.")
    if spec.note:
        notes.append(spec.note)
    unpublished = load_published()["not_retrieved"].get(table)
    if unpublished:
        notes.append(unpublished)
    lines += bullet_notes(notes + outcome_notes(skipped, failed))
    if claims:
        lines += ["", "Claims (ours, lower FD is better):"]
        for c in claims:
            verdict = "holds" if c["holds"] else "does not hold"
            noise = " (within seed spread)" if c["within_noise"] else ""
            ours, theirs = c["values"]
            lines.append(f"- {c['better']} below {c['worse']} on {_label(c['dataset'])}: {verdict}, FD {ours:.2f} "
                         f"vs {theirs:.2f}{noise}")
    return "\n".join(lines) + "\n"
