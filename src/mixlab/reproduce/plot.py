"""Accuracy against cost for a reproduced table: ours (final-epoch top-1, mean ± std over seeds) against forward
FLOPs per image at the dataset's input size, one panel per dataset.

FLOPs come from `mixlab.bench.flops.model_flops` (FlopCounterMode + FFT/attention/LSTM formulas, FLOPs =
2·MACs); where the bench module is absent the plot uses parameters instead and says so on the axis.
"""
from pathlib import Path

from ..data.spec import get_spec
from ..fileio import pyplot, save_figure
from .tables import DATASET_LABELS

def row_gflops(model, model_kwargs, dataset):
    """Forward GFLOPs per image of `model` (+ kwargs) at `dataset`'s input size (FlopCounterMode + FFT,
    attention and LSTM formulas, FLOPs = 2·MACs); None when the bench module is not available."""
    from .. import create_model
    try:
        from ..bench.flops import model_flops
    except ImportError:
        return None
    spec = get_spec(dataset)
    c, h, w = spec.image_size if spec else (3, 32, 32)
    net = create_model(model, num_classes=spec.num_classes if spec else 10, in_chans=c, img_size=h,
                       **(model_kwargs or {}))
    return model_flops(net, (c, h, w)).total / 1e9


def cost_of(model, dataset):
    """(forward GFLOPs per image, unit) of a registered model at `dataset`'s size (see `row_gflops`)."""
    return row_gflops(model, {}, dataset), "forward GFLOPs / image"


def plot_accuracy_vs_cost(rows, path, title="", cost_fn=None):
    """Write the PNG; returns ({(model, dataset): cost}, unit) so the JSON can carry the figures too.
    The cost is each row's `gflops` unless `cost_fn(model, dataset) -> (cost, unit)` is given."""
    plt = pyplot()

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if not datasets:
        raise ValueError("no rows to plot")
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    costs, unit = {}, ""
    for ax, dataset in zip(axes[0], datasets):
        for r in (r for r in rows if r["dataset"] == dataset):
            cost, unit = cost_fn(r["model"], dataset) if cost_fn else (r["gflops"], "forward GFLOPs / image")
            costs[(r["model"], dataset)] = cost
            ax.errorbar(cost, r["top1_mean"], yerr=r["top1_std"] or 0, fmt="o", capsize=3)
            ax.annotate(r["model"], (cost, r["top1_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        spread = [c for (m, d), c in costs.items() if d == dataset and c]
        if spread and max(spread) > 10 * min(spread):   # log only when costs span a decade (AFFNet vs isotropic)
            ax.set_xscale("log")
        ax.margins(x=0.15, y=0.1)
        ax.set_title(DATASET_LABELS.get(dataset, dataset))
        ax.set_xlabel(unit)
        ax.set_ylabel("final-epoch test top-1 (%)")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    return costs, unit
