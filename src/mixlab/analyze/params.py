"""Attention-module parameters: SE in every block against one DIA-LSTM per stage, by backbone and depth.

The journal version of DIANet (arXiv 2210.16101) claims DIA cuts the attention modules' parameters by up to
94.4 %. Per stage of n blocks with C channels, SE at reduction r costs n·(2C²/r + C/r + C) and grows with
depth; the DIA-LSTM (two bottleneck maps C → C/r → 4C) costs 2·(5C²/r + C/r + 4C) once, about as much as
five SE modules at the same r. This module counts both on the real models (built on the meta device, so no
memory is spent) for the DIANet backbones at several depths, with a third configuration for reference: one SE
module per stage shared by its blocks (DIA's sharing without the LSTM), which saves exactly 1 − 1/n.
"""
import csv
import io
from pathlib import Path

import torch

from ..fileio import pyplot, save_figure, write_json, write_text
from ..registry import create_model

SE_REDUCTION, DIA_REDUCTION = 16, 4      # SE paper / osmr default; the official DIA-LSTM (README "r=4")
CLAIM = 94.4                             # % fewer attention parameters, quoted from the journal version
# (label, registered model whose backbone is used, depths): each depth rebuilds that backbone
BACKBONES = (
    ("ResNet (bottleneck)", "resnet164", (20, 56, 110, 164, 272, 542, 1001)),
    ("PreResNet (bottleneck)", "preresnet164", (20, 56, 110, 164, 272, 542, 1001)),
    ("WRN-d-4", "wrn52_4", (16, 28, 40, 52, 100)),
    ("ResNeXt 8×32d", "resnext101_8x32d", (29, 56, 101, 200)),
)
COLUMNS = ("backbone", "model", "depth", "blocks_per_stage", "stage_channels", "se16_params", "dia4_params",
           "dia16_params", "shared_se16_params", "saving_dia4_vs_se16", "saving_dia16_vs_se16",
           "saving_shared_se16_vs_se16")


def _build(name, **overrides):
    with torch.device("meta"):          # shapes only: a 200-layer ResNeXt costs no memory
        return create_model(name, num_classes=100, **overrides)


def _numel(modules):
    return sum(p.numel() for m in modules for p in m.parameters())


def attention_modules(model):
    """The SE modules and DIA cells of a CIFAR ResNet, stage by stage: [[modules of stage 1], ...]."""
    return [[stage.dia] if stage.dia is not None else [b.se for b in stage.blocks if b.se is not None]
            for stage in model.stages]


def attention_params_row(label, name, depth):
    """One backbone at one depth: the attention parameters of every configuration and DIA's savings (%)."""
    se = attention_modules(_build(name, depth=depth, dia=False, se=True, se_reduction=SE_REDUCTION))
    dia4 = attention_modules(_build(name, depth=depth, se=False, dia=True, dia_reduction=DIA_REDUCTION))
    dia16 = attention_modules(_build(name, depth=depth, se=False, dia=True, dia_reduction=SE_REDUCTION))
    se_params = _numel(m for stage in se for m in stage)
    shared = _numel(stage[0] for stage in se)          # one SE module per stage, used by all its blocks
    row = {"backbone": label, "model": name, "depth": depth, "blocks_per_stage": len(se[0]),
           "stage_channels": "/".join(str(cells[0].channels) for cells in dia4),
           "se16_params": se_params, "dia4_params": _numel(m for s in dia4 for m in s),
           "dia16_params": _numel(m for s in dia16 for m in s), "shared_se16_params": shared}
    for key, params in (("dia4", row["dia4_params"]), ("dia16", row["dia16_params"]), ("shared_se16", shared)):
        row[f"saving_{key}_vs_se16"] = 100.0 * (1 - params / se_params)
    return row


def attention_params_table(backbones=None):
    """Rows of `attention_params_row` for every (backbone, depth) of `backbones` (default: BACKBONES)."""
    return [attention_params_row(label, name, depth)
            for label, name, depths in (BACKBONES if backbones is None else backbones) for depth in depths]


def render_markdown(rows):
    lines = ["| backbone | depth | blocks / stage | channels | SE r=16, every block | DIA-LSTM r=4 | "
             "DIA-LSTM r=16 | one SE r=16 per stage | saving DIA r=4 | saving DIA r=16 | saving shared SE |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        def pct(key):
            value = r[key]
            text = f"{value:.1f} %"
            return f"**{text}**" if value >= CLAIM else text
        lines.append(f"| {r['backbone']} | {r['depth']} | {r['blocks_per_stage']} | {r['stage_channels']} | "
                     f"{r['se16_params']:,} | {r['dia4_params']:,} | {r['dia16_params']:,} | "
                     f"{r['shared_se16_params']:,} | {pct('saving_dia4_vs_se16')} | {pct('saving_dia16_vs_se16')} | "
                     f"{pct('saving_shared_se16_vs_se16')} |")
    return "\n".join(lines) + "\n"


def reaching_claim(rows, claim=CLAIM):
    """[(backbone, depth, configuration, saving %)] of every configuration that saves ≥ `claim` % (rounded to
    one decimal, as the claim is)."""
    found = []
    for r in rows:
        for key, what in (("saving_dia4_vs_se16", "DIA-LSTM r=4"), ("saving_dia16_vs_se16", "DIA-LSTM r=16"),
                          ("saving_shared_se16_vs_se16", "one shared SE r=16 per stage")):
            if round(r[key], 1) >= claim:
                found.append((r["backbone"], r["depth"], what, r[key]))
    return found


def write_attention_params_report(rows, out_dir):
    """attention_params.csv / .md / .json and attention_params.png (parameters and savings against depth)."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    paths = [out_dir / "attention_params.csv", out_dir / "attention_params.md", out_dir / "attention_params.json"]
    write_text(paths[0], buf.getvalue())
    write_text(paths[1], render_markdown(rows))
    write_json(paths[2], {"se_reduction": SE_REDUCTION, "dia_reduction": DIA_REDUCTION, "claim_percent": CLAIM,
                          "rows": rows, "reaching_claim": reaching_claim(rows)})
    paths.append(Path(save_figure(_plot(rows), out_dir / "attention_params.png")))
    return paths


def _plot(rows):
    """Left: attention parameters against depth; right: DIA's saving. Colour = backbone (backbones with the same
    attention counts, ResNet and PreResNet, share one line), line style = configuration."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    groups = {}            # identical attention counts → one line labelled with every backbone name
    for b in dict.fromkeys(r["backbone"] for r in rows):
        mine = [r for r in rows if r["backbone"] == b]
        key = tuple((r["depth"], r["se16_params"], r["dia4_params"], r["dia16_params"]) for r in mine)
        groups.setdefault(key, (mine, []))[1].append(b)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.8))
    styles = {"se16": ("o-", "SE r=16 in every block"), "dia4": ("s--", "DIA-LSTM r=4 (official)"),
              "dia16": ("^:", "DIA-LSTM r=16"), "shared_se16": ("x-.", "one SE r=16 shared per stage")}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for color, (mine, names) in zip(colors, groups.values()):
        depth = [r["depth"] for r in mine]
        for key in ("se16", "dia4"):
            left.plot(depth, [r[f"{key}_params"] for r in mine], styles[key][0], color=color)
        for key in ("dia4", "dia16", "shared_se16"):
            right.plot(depth, [r[f"saving_{key}_vs_se16"] for r in mine], styles[key][0], color=color)
        handles.append(Line2D([], [], color=color, lw=6, label=" / ".join(names)))
    handles += [Line2D([], [], color="k", marker=m[0], ls=m[1:], label=label) for m, label in styles.values()]
    handles.append(Line2D([], [], color="grey", ls=(0, (1, 1)), label=f"journal's claim: {CLAIM} % fewer"))
    left.set(xscale="log", yscale="log", xlabel="depth", ylabel="attention-module parameters (100 classes)",
             title="Attention parameters against depth")
    right.axhline(CLAIM, color="grey", lw=1, ls=(0, (1, 1)))
    right.axhline(0, color="grey", lw=0.5)
    right.set(xscale="log", xlabel="depth", ylabel="% fewer attention parameters than SE r=16 in every block",
              title="DIA's saving against depth (below −150 % not shown)", ylim=(-150, 105))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
