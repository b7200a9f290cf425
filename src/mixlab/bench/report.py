"""Bench output: environment record, terminal table, JSON / CSV files and PNG plots (matplotlib, Agg)."""
import csv
import datetime
import io
import json
import math
import os
import platform
from pathlib import Path

import torch

from .. import fileio
from ..fileio import pyplot, save_figure
from .flops import __doc__ as FLOP_CONVENTION
from .memory import METHOD as MEMORY_METHOD
from .timing import __doc__ as TIMING_METHOD


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device):
    """Where and how the figures were taken: date, torch/timm/mixlab versions, device name, threads, methods."""
    from .. import __version__
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model()
    try:
        import timm
        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch": torch.__version__, "timm": timm_version, "mixlab": __version__,
            "python": platform.python_version(), "device": dev.type, "device_name": name,
            "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "flop_convention": " ".join(FLOP_CONVENTION.split()),
            "memory_method": MEMORY_METHOD[dev.type], "timing_method": " ".join(TIMING_METHOD.split())}


def _si(v, unit=""):
    if not isinstance(v, (int, float)):
        return "-"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f}{suffix}{unit}"
    return f"{v:.3g}{unit}"


def _num(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


COLUMNS = [  # header, key, formatter
    ("model", "model", str), ("px", "img_size", str), ("N", "tokens", lambda v: str(v) if v else "-"),
    ("params", "params", _si), ("FLOPs fwd", "flops_fwd", _si),
    ("MACs fwd", "flops_fwd", lambda v: _si(v / 2 if isinstance(v, (int, float)) else v)),   # MACs = FLOPs / 2
    ("FLOPs f+b", "flops_fwd_bwd", _si),
    ("mixer%", "mixer_share", lambda v: _num(v, ".0%")),
    ("inf ms", "infer_step_ms", lambda v: _num(v, ".1f")), ("inf img/s", "infer_throughput", lambda v: _num(v, ".1f")),
    ("trn ms", "train_step_ms", lambda v: _num(v, ".1f")), ("trn img/s", "train_throughput", lambda v: _num(v, ".1f")),
    ("inf MiB", "infer_memory_mb", lambda v: _num(v, ".1f")), ("trn MiB", "train_memory_mb", lambda v: _num(v, ".1f")),
    ("×peer trn img/s", "ratio_train_throughput", lambda v: _num(v, ".2f")),
    ("×peer trn MiB", "ratio_train_memory_mb", lambda v: _num(v, ".2f")),
]


def format_table(rows):
    """Fixed-width text table of bench rows (ratios are mixlab / timm peer)."""
    def cell(row, key, fmt):
        if key == "mixer_share":
            f, m = row.get("flops_fwd"), row.get("flops_fwd_mixer")
            return fmt(m / f if f and m is not None else None)
        if row.get("status", "ok") != "ok" and key not in ("model", "img_size", "tokens"):
            return row["status"] if key == "params" else "-"
        return fmt(row.get(key))

    table = [[h for h, _, _ in COLUMNS]] + [[cell(r, k, f) for _, k, f in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in table]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def format_exponents(exps):
    figs = ["flops_fwd", "flops_fwd_mixer", "infer_step_ms", "train_step_ms", "train_memory_mb"]
    head = f"{'family':<12}" + "".join(f"{f:>22}" for f in figs)
    lines = [head, "-" * len(head)]
    for fam, d in exps.items():
        cells = []
        for f in figs:
            k, last = d[f]["exponent"], d[f]["exponent_last"]
            cells.append(f"{_num(k, '.2f')} (last {_num(last, '.2f')})".rjust(22))
        lines.append(f"{fam:<12}" + "".join(cells))
    return "\n".join(lines + ["exponent k of figure ∝ N^k (tokens), fitted over all sizes and over the last two"])


def write_json(path, meta, rows, **extra):
    """Rows and environment as one JSON file, written atomically (a killed bench never truncates it)."""
    fileio.write_json(path, {"meta": meta, "rows": rows, **extra})


def write_csv(path, rows):
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_text(path, buf.getvalue())


def load_accuracy(path, dataset=None):
    """{model: top-1 %} from `reproduce` results: a JSON {model: acc}, a JSON list / {"rows": [...]} of
    records, or a CSV; records name the model in `model` and the accuracy in the first of `top1_mean`,
    `test_top1`, `top1`, `acc`, `accuracy` (fractions ≤ 1 are turned into percent). Records of several
    datasets are never mixed: pick one with `dataset`. Several records of a model (seeds) average."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"accuracy file {path} does not exist")
    try:
        if p.suffix == ".csv":
            with open(p, newline="") as f:
                records = list(csv.DictReader(f))
        else:
            data = json.loads(p.read_text())
            if isinstance(data, dict) and not isinstance(data.get("rows"), list):
                records = [{"model": k, "acc": v} for k, v in data.items() if isinstance(v, (int, float))]
            else:
                records = data["rows"] if isinstance(data, dict) else data
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, RecursionError) as e:
        raise ValueError(f"accuracy file {path} cannot be read: {fileio.first_line(e)}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"accuracy file {path} must hold {{model: top-1}}, a list of records (objects with "
                         f"'model' and 'top1'), or {{\"rows\": [...]}}; it holds "
                         f"{type(records).__name__ if not isinstance(records, list) else 'a list of non-objects'}")
    datasets = sorted({r["dataset"] for r in records if r.get("dataset")})
    if dataset is not None:
        if dataset not in datasets:
            raise ValueError(f"{path} has no results on {dataset!r} (it has {', '.join(datasets) or 'none'})")
        records = [r for r in records if r.get("dataset") == dataset]
    elif len(datasets) > 1:
        raise ValueError(f"{path} holds results on several datasets ({', '.join(datasets)}): choose one "
                         f"with --accuracy-dataset")
    acc = {}
    for r in records:
        key = next((k for k in ("top1_mean", "test_top1", "top1", "acc", "accuracy")
                    if r.get(k) not in (None, "")), None)
        if key is None or "model" not in r:
            continue
        try:
            v = float(r[key])
        except (TypeError, ValueError):
            raise ValueError(f"accuracy file {path}: {r['model']!r} has {key}={r[key]!r}, not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"accuracy file {path}: {r['model']!r} has {key}={r[key]!r}, not a finite number")
        acc.setdefault(r["model"], []).append(100 * v if v <= 1 else v)
    if not acc:
        raise ValueError(f"{path} has no record with a model and an accuracy (test_top1 / top1 / acc)")
    return {m: sum(v) / len(v) for m, v in acc.items()}


def plot_sweep(rows, out_dir):
    """Throughput, memory and FLOPs vs tokens (log-log), one line per family; returns the PNG paths."""
    plt = pyplot()
    out_dir = Path(out_dir)
    fileio.ensure_folder(out_dir)
    panels = {"throughput_vs_tokens.png": [("train_throughput", "train img/s"), ("infer_throughput", "inference img/s")],
              "memory_vs_tokens.png": [("train_memory_mb", "train peak MiB"), ("infer_memory_mb", "inference peak MiB")],
              "flops_vs_tokens.png": [("flops_fwd", "forward FLOPs / image"), ("flops_fwd_mixer", "mixer FLOPs / image")]}
    paths = []
    families = list(dict.fromkeys(r["sweep_family"] for r in rows))
    for fname, figs in panels.items():
        fig, axes = plt.subplots(1, len(figs), figsize=(5.5 * len(figs), 4))
        for ax, (key, label) in zip(axes, figs):
            for fam in families:
                ok = sorted((r for r in rows if r["sweep_family"] == fam and r.get("status") == "ok"
                             and isinstance(r.get(key), (int, float))), key=lambda r: r["tokens"])
                if ok:
                    ax.plot([r["tokens"] for r in ok], [r[key] for r in ok], "o-", label=fam)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("tokens N")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / fname, dpi=110))
    return paths


def plot_accuracy_vs_flops(rows, accuracy, path):
    """Top-1 vs forward GFLOPs per image for the bench rows that have an accuracy; returns the path."""
    plt = pyplot()
    pts = [(r["flops_fwd"] / 1e9, accuracy[r["model"]], r["model"]) for r in rows
           if r.get("model") in accuracy and isinstance(r.get("flops_fwd"), (int, float))]
    if not pts:
        raise ValueError("no benchmarked model has an accuracy in the given results")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for gf, acc, name in pts:
        ax.scatter(gf, acc)
        ax.annotate(name, (gf, acc), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("forward GFLOPs / image")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_bench(rows, out_dir):
    """Bar charts of throughput and peak memory per model (a plain bench run); returns the PNG path."""
    plt = pyplot()
    ok = [r for r in rows if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, label) in zip(axes, [("train_throughput", "train img/s"), ("train_memory_mb", "train peak MiB")]):
        vals = [r.get(key) or 0 for r in ok]
        ax.barh([r["model"] for r in ok], vals)
        ax.set_xlabel(label)
    fig.tight_layout()
    return save_figure(fig, Path(out_dir) / "bench.png", dpi=110)
