"""The README's first command: the five token mixers of the seed papers, trained at one small, equal budget
on Fashion-MNIST and compared in a table and one plot.

CPU (2-2½ minutes of training on two cores, docs/BENCHMARKS.md): the `*_demo` configs — attention (ViT),
token-mixing MLP (MLP-Mixer), NiNformer's gating, Activator's GLU and AFF at the same width, depth and patch
grid — on the full 60,000 training images for 3 epochs with the `demo` recipe. GPU: the paper-size configs for
longer, in about the same time. Every model gets an ordinary run directory; the demo directory also gets
`comparison.png` (test top-1 on the full 10,000-image test set against training time, all models) and
`comparison.json` (the table). Test top-1, params, FLOPs and training images/s are reported per model.
"""
import time
from dataclasses import dataclass
from pathlib import Path

from ..fileio import pyplot, save_figure, write_json
from ..decision import decide
from ..rundir import RunDir
from ..device import pick_device
from .config import TrainConfig
from .engine import train

MIXER_NAMES = {"vit": "attention", "mixer": "token-mixing MLP", "ninformer": "NiNformer gating",
               "activator": "Activator GLU", "aff": "adaptive frequency filter"}


@dataclass(frozen=True)
class DemoPlan:
    models: tuple
    recipe: str
    epochs: int
    batch_size: int
    precision: str = None       # None: the recipe's
    subset: int = None


CPU_PLAN = DemoPlan(("vit_demo", "mixer_demo", "ninformer_demo", "activator_demo", "aff_demo"), "demo", 3, 128)
# fp32 on the GPU too: the paper-size ViT is known to collapse to chance under bf16 autocast with the paper
# recipe (docs/models.md), and no GPU run of this plan has been measured yet (docs/BENCHMARKS.md); a slower
# first run beats a collapsed one. 10 epochs is sized from the models' FLOPs for ~3 minutes on one H100.
GPU_PLAN = DemoPlan(("vit_paper", "mixer_paper", "ninformer_paper", "activator_paper", "aff_paper_size"), "mixlab",
                    10, 512, precision="fp32")
DATASET = "fashion-mnist"
NEXT_STEP = "mixlab reproduce activator --datasets fashion-mnist   # the paper models and recipe, 100 epochs"


def run_demo(out=None, models=None, device="auto", epochs=None, subset=None, batch_size=None, seed=0,
             data_dir=None, log=print, overwrite=False):
    """Train the demo models on Fashion-MNIST; return (rows, demo_dir, plan, seconds).

    A demo directory run again (repeated, or after a kill) goes on where it is, as `reproduce` does
    (`decision.decide(..., reuse=True)`): a finished run of the same request is reused, an interrupted one
    resumed, a run of another request (other epochs, subset, …) refused in one line unless `overwrite`."""
    from ..bench.flops import model_flops
    from ..data import ensure_default_dataset
    from ..data.spec import get_spec
    from ..registry import create_model, model_cfg

    dev = pick_device(device)   # before the dataset: a missing CUDA device is one line, nothing fetched
    folder = ensure_default_dataset(verbose=True, data_dir=data_dir)
    plan = GPU_PLAN if dev.type == "cuda" else CPU_PLAN
    plan = DemoPlan(tuple(models or plan.models), plan.recipe, epochs or plan.epochs, batch_size or plan.batch_size,
                    plan.precision, subset)
    demo_dir = Path(out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    data_note = (f"stratified {plan.subset}-image subsets of the training and test sets" if plan.subset else
                 "all 60,000 training images, tested on the full 10,000-image test set")
    log(f"demo: Fashion-MNIST from {folder}; {data_note}")
    log(f"demo: {len(plan.models)} models ({', '.join(plan.models)}), recipe '{plan.recipe}', {plan.epochs} epochs "
        f"of batch {plan.batch_size} each, on {dev}; run directories in {demo_dir}")
    c, h, w = get_spec(DATASET).image_size
    rows, curves = [], {}
    start = time.perf_counter()
    for name in plan.models:
        overrides = {"precision": plan.precision} if plan.precision else {}
        config = TrainConfig(model=name, data=DATASET, recipe=plan.recipe, epochs=plan.epochs,
                             batch_size=plan.batch_size, subset=plan.subset, device=str(dev), seed=seed,
                             out=str(demo_dir / name), data_dir=data_dir, overrides=overrides, overwrite=overwrite)
        decision = decide(RunDir(config.out), config, reuse=True)
        if decision.action == "reuse":
            log(f"demo: {name}: reusing the finished run in {config.out}")
            summary = decision.summary
        else:
            if decision.note:
                log(decision.note)
            summary = train(decision.config, log=log)
        history = RunDir(demo_dir / name).read_metrics()
        train_seconds = sum(r["train_pass_seconds"] for r in history)
        flops = model_flops(create_model(name, num_classes=10, in_chans=c, img_size=h), (c, h, w)).total
        rows.append({"model": name, "mixer": MIXER_NAMES.get(model_cfg(name).get("family"), name),
                     "params": summary["params"], "gflops": flops / 1e9, "test_top1": summary["test_top1"],
                     "test_images": summary["test_images"],
                     "train_images_per_s": summary["train_images"] * plan.epochs / max(train_seconds, 1e-9),
                     "train_seconds": train_seconds, "seconds": summary["train_seconds"],
                     "precision": summary["precision"], "run": str(demo_dir / name)})
        curves[name] = history
    total = time.perf_counter() - start
    write_json(demo_dir / "comparison.json", {"dataset": DATASET, "device": str(dev), "plan": plan.__dict__,
                                              "seconds": total, "rows": rows})
    plot_comparison(demo_dir / "comparison.png", curves,
                    title=f"Fashion-MNIST, {plan.epochs} epochs each ({plan.recipe} recipe), {dev}")
    return rows, demo_dir, plan, total


def plot_comparison(path, curves, title=""):
    """Test top-1 (full test set) against cumulative training time, one line per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, rows in curves.items():
        t, seconds = [], 0.0
        for r in rows:
            seconds += r["train_pass_seconds"]
            t.append(seconds)
        ax.plot(t, [r["test_top1"] for r in rows], marker="o", label=name)
    ax.set(xlabel="training time (s)", ylabel="test top-1 (%), 10,000 images", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
