"""Cross-layer correlation of channel attention, the observation DIA starts from.

The journal version of DIANet (arXiv 2210.16101) reports that self-attention modules placed in every layer
produce strongly correlated attention across layers, "average Pearson correlation coefficient of up to 0.85".
For one stage with blocks 1..L and one image, block l has a channel-attention vector a_l ∈ (0, 1)^C: for SE
the gate σ(W₂ ReLU(W₁ GAP(R_l))), for DIA the LSTM output h_l that scales R_l. Their Pearson correlation over
the C channels is

    ρ_lm = Σ_c (a_lc − ā_l)(a_mc − ā_m) / sqrt(Σ_c (a_lc − ā_l)² · Σ_c (a_mc − ā_m)²),

the matrix reported is ρ averaged over the images, and its summary is the mean of the off-diagonal entries
(l ≠ m). A vector that is constant over the channels has no correlation; such pairs are left out of the
average and counted as `undefined`.

Attention is read with forward hooks on the modules that produce it (timm's SE gate, the DIA-LSTM cell), so
the model runs exactly as it does in training and evaluation.
"""
import csv
import io
from pathlib import Path

import torch

from ..fileio import pyplot, save_figure, write_json, write_text
from ..layers.dia import DIALSTMCell
from ..models import IsotropicNet
from ..models.dia import CifarResNet


def attention_sites(model):
    """{stage name: the modules whose outputs are that stage's attention vectors, in block order}.

    A DIA stage has one cell called once per block; an SE stage has one gate per block. The isotropic
    transformer with DIA (`dia_vit_*`) is one stage of `depth` blocks sharing one cell."""
    sites = {}
    if isinstance(model, CifarResNet):
        for i, stage in enumerate(model.stages, 1):
            if stage.dia is not None:
                sites[f"stage{i}"] = [stage.dia]
            elif all(getattr(block, "se", None) is not None for block in stage.blocks):
                sites[f"stage{i}"] = [block.se.gate for block in stage.blocks]
    elif isinstance(model, IsotropicNet) and isinstance(model.dia, DIALSTMCell):
        sites["blocks"] = [model.dia]
    if not sites:
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(f"{name} has no channel attention to record (no SE module in every block, no DIA "
                         f"cell); use an se_*, dia_* or dia_vit_* model")
    return sites


def _attention_vector(output):
    """A hooked module's output → [B, C]: the DIA cell returns (h, (h, c)), the SE gate [B, C, 1, 1]."""
    if isinstance(output, tuple):
        output = output[0]
    return output.detach().flatten(1)


@torch.no_grad()
def record_attention(model, x):
    """{stage: [L, B, C]} attention vectors of every block for the batch `x`; the model is left unchanged."""
    records, handles = {}, []
    try:
        for stage, modules in attention_sites(model).items():
            records[stage] = []
            for module in modules:
                handles.append(module.register_forward_hook(
                    lambda _m, _inputs, output, out=records[stage]: out.append(_attention_vector(output))))
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {stage: torch.stack(vectors) for stage, vectors in records.items()}


def pearson_per_image(attention):
    """[L, B, C] → [B, L, L]: Pearson correlation over the channels of every pair of blocks, per image, in
    float64; NaN where a vector is constant over the channels."""
    a = attention.double()
    a = a - a.mean(dim=-1, keepdim=True)
    norm = a.norm(dim=-1, keepdim=True)
    a = a / torch.where(norm > 0, norm, torch.nan)
    return torch.einsum("lbc,mbc->blm", a, a)


def off_diagonal_mean(matrix):
    """Mean of the entries with l ≠ m of a square matrix (NaN for a 1×1 matrix: one block has no pair)."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    mask = ~torch.eye(matrix.shape[0], dtype=torch.bool)
    return matrix[mask].mean().item() if mask.any() else float("nan")


@torch.no_grad()
def attention_correlation(model, images, mean, std, batch_size=250, device="cpu"):
    """Layer × layer Pearson correlation of the attention vectors, per stage, averaged over `images`.

    images: uint8 [N, C, H, W]; mean/std: the normalisation the model was trained with. Returns
    {"images": N, "stages": {stage: {"matrix": [[...]], "mean_off_diagonal", "blocks", "channels",
    "undefined"}}, "mean_off_diagonal": the mean of the stages' values}.
    """
    from ..train.evaluate import normalise

    if len(images) == 0:
        raise ValueError("no images to record attention on; pass --images N with N ≥ 1")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    dtype = next(model.parameters()).dtype       # a float64 model gets float64 images
    sums, counts, shapes = {}, {}, {}
    try:
        for start in range(0, len(images), batch_size):
            x = normalise(images[start:start + batch_size], mean, std, device).to(dtype)
            for stage, attention in record_attention(model, x).items():
                rho = pearson_per_image(attention.cpu())
                valid = ~rho.isnan()
                sums[stage] = sums.get(stage, 0) + torch.where(valid, rho, 0.0).sum(0)
                counts[stage] = counts.get(stage, 0) + valid.sum(0)
                shapes[stage] = attention.shape
    finally:
        model.train(was_training)
    stages = {}
    for stage, total in sums.items():
        matrix = total / counts[stage].clamp(min=1)
        matrix[counts[stage] == 0] = torch.nan
        blocks, _, channels = shapes[stage]
        stages[stage] = {"matrix": matrix.tolist(), "mean_off_diagonal": off_diagonal_mean(matrix),
                         "blocks": blocks, "channels": channels,
                         "undefined": int(len(images) * blocks * blocks - counts[stage].sum())}
    means = [s["mean_off_diagonal"] for s in stages.values() if s["blocks"] > 1]
    return {"images": len(images), "stages": stages,
            "mean_off_diagonal": sum(means) / len(means) if means else float("nan")}


def write_correlation_report(result, out_dir, title):
    """correlation.json (matrices + summary), correlation_<stage>.csv (one matrix each) and correlation.png
    (one heatmap per stage) in `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    paths = [out_dir / "correlation.json"]
    write_json(paths[0], {"title": title, **result})
    for stage, s in result["stages"].items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["block"] + [str(m + 1) for m in range(s["blocks"])])
        for l, row in enumerate(s["matrix"], 1):
            writer.writerow([str(l)] + [f"{v:.6f}" for v in row])
        path = out_dir / f"correlation_{stage}.csv"
        write_text(path, buf.getvalue())
        paths.append(path)
    paths.append(Path(save_figure(_heatmaps(result, title), out_dir / "correlation.png")))
    return paths


def _heatmaps(result, title):
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    stages = result["stages"]
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages) + 0.8, 4.4), squeeze=False)
    image = None
    for ax, (stage, s) in zip(axes[0], stages.items()):
        image = ax.imshow(s["matrix"], vmin=-1, vmax=1, cmap="RdBu_r", origin="upper",
                          extent=(0.5, s["blocks"] + 0.5, s["blocks"] + 0.5, 0.5))
        ax.set_title(f"{stage}: {s['blocks']} blocks × {s['channels']} ch\nmean off-diagonal "
                     f"{s['mean_off_diagonal']:.3f}", fontsize=9)
        ax.set_xlabel("block")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("block")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="Pearson r (mean over images)")
    fig.suptitle(f"{title} — {result['images']} images", fontsize=10)
    return fig


def load_run_for_analysis(run_dir, images, data=None, data_dir=None):
    """(model, test dataset, mean, std) of a run directory: its default weights (`rundir.default_weights`), `images` test images
    of the dataset in its config.json (or `data`), and the normalisation it was trained with."""
    from ..checkpoint import load
    from ..data import load_dataset

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    from ..rundir import RunDir
    config = RunDir(run_dir).read_config()   # a damaged config.json is one line naming it
    train_cfg = config.get("train") or {}
    name = data or train_cfg.get("data") or config.get("dataset")
    if not name:
        raise ValueError(f"{run_dir}/config.json names no dataset; pass --data")
    if config.get("mean") is None or config.get("std") is None:
        raise ValueError(f"{run_dir}/config.json has no mean/std, so the images cannot be normalised as in training")
    model = load(run_dir)
    dataset = load_dataset(name, split="test", data_dir=data_dir or train_cfg.get("data_dir"), subset=images,
                           verbose=False)
    if tuple(dataset.image_size) != tuple(config["input_size"]):
        raise ValueError(f"{name} images are {tuple(dataset.image_size)} but the run was trained on "
                         f"{tuple(config['input_size'])}; pass --data with the run's dataset")
    return model, dataset, config["mean"], config["std"]


def untrained_for_analysis(model_name, data, images, data_dir=None, seed=0, **overrides):
    """(freshly initialised model, test dataset, mean, std): the untrained baseline on `images` images of
    `data`, normalised with the dataset's statistics."""
    from ..data import load_dataset
    from ..registry import create_model

    dataset = load_dataset(data, split="test", data_dir=data_dir, subset=images, verbose=False)
    c, h, w = dataset.image_size
    if h != w:
        raise ValueError(f"{data} images are {h}×{w}; the models take square images")
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=dataset.num_classes, in_chans=c, img_size=h, **overrides)
    return model.eval(), dataset, dataset.mean, dataset.std
