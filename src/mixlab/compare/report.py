"""A compare's table as text (the terminal), markdown, CSV and JSON, and its Pareto plots (PNG).

Columns: mixer, width, params, GFLOPs and GMACs per image (forward; torch's FlopCounterMode counts a
multiply-add as 2 FLOPs, so GMACs = GFLOPs / 2), training steps of the budget, training images/s (measured
during the runs' training passes) and peak MiB (one training step, mixlab.bench.memory), test top-1 mean ± sd
over the seeds with its 95 % CI, the lr used, and against the baseline the difference and Welch's p.
"""
import csv
import io
from pathlib import Path

from ..fileio import pyplot, save_figure, write_json, write_text

PLOTS = (("train_images_per_s", "training images/s (measured)"), ("gflops", "GFLOPs per image (forward)"),
         ("params", "parameters"), ("peak_mib", "peak MiB, one training step"))


def _num(v, fmt, none="—"):
    return none if v is None else format(v, fmt)


def _top1(r):
    if r["top1_mean"] is None:
        return "—"
    return f"{r['top1_mean']:.2f}" + (f" ± {r['top1_sd']:.2f}" if r["top1_sd"] is not None else "")


def _ci(r):
    return "—" if r["top1_ci95"] is None else f"[{r['top1_ci95'][0]:.2f}, {r['top1_ci95'][1]:.2f}]"


def _versus(r):
    v = r.get("vs_baseline")
    if not v:
        return "—"
    return f"{v['difference']:+.2f}" + (f" (p={v['p']:.2g})" if v["p"] is not None else "")


def table_rows(result):
    """[[cell, …]] with a header row: the one layout of the text and markdown tables."""
    header = ["mixer", "width", "params", "GFLOPs", "GMACs", "steps", "train img/s", "peak MiB",
              "test top-1 %", "95% CI", "lr", "vs " + (result.get("baseline") or "baseline")]
    rows = [header]
    for r in sorted(result["rows"], key=lambda r: -(r["top1_mean"] if r["top1_mean"] is not None else -1)):
        rows.append([r["mixer"], str(r["width"]), f"{r['params']:,}", f"{r['gflops']:.4f}", f"{r['gmacs']:.4f}",
                     str(r["steps"]), _num(r["train_images_per_s"], ",.0f"), _num(r["peak_mib"], ".1f"), _top1(r),
                     _ci(r), _num(r["lr"], "g"), _versus(r)])
    return rows


def format_table(result):
    rows = table_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def markdown(result):
    rows = table_rows(result)
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    plan, env = result["plan"], result["environment"]
    out += pairwise_markdown(result) + pareto_lines(result)
    out += ["", f"{plan['data'].get('train_images'):,} training images; budget {plan['budget']['text']} per run "
                f"(recipe {plan['recipe']} v{plan['recipe_version']}, batch {plan['batch_size']}); "
                f"{env.get('device_name')} ({plan['device']}, {plan['threads']} threads, "
                f"{', '.join(env.get('precision') or [])}), torch {env.get('torch')}, {env.get('date')}",
            "", f"`{result['command']}`"]
    return "\n".join(out) + "\n"


def pairwise_markdown(result):
    """The pairwise table: row − column difference of mean test top-1 (points) and Welch's p."""
    pairs = result.get("pairwise") or {}
    names = [r["mixer"] for r in sorted(result["rows"], key=lambda r: -(r["top1_mean"] or -1)) if r["mixer"] in pairs]
    if len(names) < 2:
        return []
    cell = lambda v: f"{v['difference']:+.2f}" + (f" (p={v['p']:.2g})" if v["p"] is not None else "")  # noqa: E731
    out = ["", "Every pair: row − column, test top-1 points (Welch's two-sided p over the seeds)", "",
           "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    out += ["| " + a + " | " + " | ".join("·" if a == b else cell(pairs[a][b]) for b in names) + " |" for a in names]
    return out


def pareto_members(result, key):
    """Mixers on the Pareto front of mean test top-1 against `key` (more throughput or less cost is better)."""
    pts = [(r[key], r) for r in result["rows"] if r["top1_mean"] is not None and r.get(key) is not None]
    sign = 1 if key == "train_images_per_s" else -1
    return sorted((pts[i] for i in pareto_front([(sign * x, r["top1_mean"]) for x, r in pts])), key=lambda p: p[0])


def pareto_lines(result):
    """One line per Pareto plot: which mixers no other mixer beats on both accuracy and that axis."""
    out = [""]
    for key, label in PLOTS:
        front = pareto_members(result, key)
        if front:
            out.append(f"- Pareto front, top-1 against {label}: {', '.join(r['mixer'] for _, r in front)}")
    return out


def to_csv(result):
    buf = io.StringIO()
    fields = ["mixer", "spec", "width", "params", "gflops", "gmacs", "train_gflops", "steps", "epochs",
              "train_images_per_s", "peak_mib", "top1_mean", "top1_sd", "top1_ci95_lo", "top1_ci95_hi", "n_seeds",
              "lr", "baseline", "difference", "p_welch"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in result["rows"]:
        v = r.get("vs_baseline") or {}
        ci = r["top1_ci95"] or [None, None]
        w.writerow({**{k: r.get(k) for k in fields if k in r}, "top1_ci95_lo": ci[0], "top1_ci95_hi": ci[1],
                    "n_seeds": len(r["seeds"]), "baseline": v.get("baseline"), "difference": v.get("difference"),
                    "p_welch": v.get("p")})
    return buf.getvalue()


def pareto_front(points):
    """Indices of the points (x, y) no other point beats on both (higher x and higher y are better)."""
    return [i for i, (x, y) in enumerate(points)
            if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)]


def plot_pareto(result, path):
    """Test top-1 (mean, error bar = sd over seeds) against throughput, FLOPs, params and peak memory; the
    Pareto front (more throughput, or fewer FLOPs/params/MiB, at more accuracy) joined by a line."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    rows = [r for r in result["rows"] if r["top1_mean"] is not None]
    for ax, (key, label) in zip(axes.flat, PLOTS):
        pts = [(r[key], r) for r in rows if r.get(key) is not None]
        for x, r in pts:
            ax.errorbar(x, r["top1_mean"], yerr=r["top1_sd"] or 0, fmt="o", capsize=3)
            ax.annotate(r["mixer"], (x, r["top1_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_members(result, key)   # throughput: more is better; costs: less is better
        if len(front) > 1:
            ax.plot([x for x, _ in front], [r["top1_mean"] for _, r in front], "--", color="grey", alpha=0.6)
        if key != "train_images_per_s" and pts and min(x for x, _ in pts) > 0:
            ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="test top-1 (%)")
        ax.grid(alpha=0.3)
    plan = result["plan"]
    fig.suptitle(f"{result['asked']['data']}: budget {plan['budget']['text']} per run, "
                 f"{result['asked']['seeds']} seed(s), recipe {plan['recipe']}")
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(out, result):
    """compare.json, compare.csv, compare.md and pareto.png in `out`."""
    out = Path(out)
    write_json(out / "compare.json", result)
    write_text(out / "compare.csv", to_csv(result))
    write_text(out / "compare.md", markdown(result))
    plot_pareto(result, out / "pareto.png")
