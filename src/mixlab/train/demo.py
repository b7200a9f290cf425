"""The README's first command: train the four paper models briefly on Fashion-MNIST and compare them.

On a GPU: the full dataset for a few epochs; on a CPU: a stratified subset sized to finish in about two
minutes on two cores. Each model gets an ordinary run directory; the demo directory also gets
`comparison.png` (test top-1 against epoch, all models) and `comparison.json` (the table).
"""
import time
from pathlib import Path

from ..fileio import pyplot, save_figure, write_json
from .config import TrainConfig
from ..device import pick_device
from .engine import train

DEMO_MODELS = ("vit_paper", "mixer_paper", "ninformer_paper", "activator_paper")
CPU_PLAN = {"epochs": 2, "subset": 500, "batch_size": 32}   # ~4 TFLOP in all: about 2 min on 2 idle cores
GPU_PLAN = {"epochs": 10, "subset": None, "batch_size": 128}


def run_demo(out=None, models=DEMO_MODELS, device="auto", epochs=None, subset=None, batch_size=None, seed=0,
             data_dir=None, log=print):
    """Train `models` on Fashion-MNIST with the paper recipe; return (rows, demo_dir)."""
    from ..data import ensure_default_dataset

    ensure_default_dataset(verbose=True, data_dir=data_dir)
    dev = pick_device(device)
    plan = dict(GPU_PLAN if dev.type == "cuda" else CPU_PLAN)
    plan.update({k: v for k, v in dict(epochs=epochs, subset=subset, batch_size=batch_size).items() if v})
    demo_dir = Path(out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    subset_note = f"a stratified {plan['subset']}-image subset" if plan["subset"] else "the full dataset"
    log(f"demo: {len(models)} models × {plan['epochs']} epochs on Fashion-MNIST ({subset_note}, {dev}); "
        f"runs in {demo_dir}")
    rows, histories = [], {}
    for name in models:
        run_dir = demo_dir / name
        summary = train(TrainConfig(model=name, data="fashion-mnist", recipe="auto", device=str(dev), seed=seed,
                                    out=str(run_dir), data_dir=data_dir, **plan), log=log)
        rows.append({"model": name, "params": summary["params"], "test_top1": summary["test_top1"],
                     "seconds": summary["train_seconds"], "run": str(run_dir)})
        histories[name] = _test_curve(run_dir)
    write_json(demo_dir / "comparison.json", {"dataset": "fashion-mnist", "device": str(dev), **plan,
                                              "rows": rows})
    plot_comparison(demo_dir / "comparison.png", histories, title=f"Fashion-MNIST, {subset_note}, {dev}")
    return rows, demo_dir


def _test_curve(run_dir):
    import csv
    with open(Path(run_dir) / "metrics.csv") as f:
        return [(int(r["epoch"]), float(r["test_top1"])) for r in csv.DictReader(f)]


def plot_comparison(path, histories, title=""):
    from matplotlib.ticker import MaxNLocator
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in histories.items():
        ax.plot([e for e, _ in curve], [t for _, t in curve], marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="test top-1 (%)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
