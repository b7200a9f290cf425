"""Token-scaling sweep: one model family at growing image sizes, and how time, memory and FLOPs grow.

Each family is its paper-size isotropic model (d=256, hidden 512, depth 4, patch 4), rebuilt at every image
size, so N = (size/4)² tokens: 32 → 256 px is 64 → 4096 tokens. Fixed-token models (token MLP, NiNformer)
are rebuilt with N-sized token weights (their token hidden stays 512). For each figure y the sweep fits
y ∝ N^k by least squares on log y vs log N over all sizes (`exponent`) and over the last two sizes
(`exponent_last`, the large-N trend where the O(N²) terms of attention take over). On CUDA a size that
runs out of memory is recorded with status 'oom' and larger sizes of that family are skipped.
"""
import math

import numpy as np

from .run import bench_model

FAMILIES = {
    "attention": "vit_paper",
    "token_mlp": "mixer_paper",
    "nin_gating": "ninformer_paper",
    "glu_gating": "activator_paper",
    "aff": "aff_paper_size",
}
FIGURES = ("flops_fwd", "flops_fwd_mixer", "infer_step_ms", "train_step_ms", "infer_memory_mb", "train_memory_mb",
           "params")


def fit_exponent(tokens, values):
    """Slope k of log(value) = k·log(tokens) + c by least squares (None with fewer than two usable points)."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(tokens, values)
           if n and isinstance(v, (int, float)) and v > 0]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    if np.ptp(x) == 0:
        return None
    return float(np.polyfit(x, y, 1)[0])


def exponents(rows):
    """{family: {figure: {"exponent": k, "exponent_last": k_last}}} from the sweep rows with status 'ok'."""
    out = {}
    for fam in dict.fromkeys(r["sweep_family"] for r in rows):
        ok = sorted((r for r in rows if r["sweep_family"] == fam and r.get("status") == "ok"),
                    key=lambda r: r["tokens"])
        tokens = [r["tokens"] for r in ok]
        out[fam] = {fig: {"exponent": fit_exponent(tokens, [r.get(fig) for r in ok]),
                          "exponent_last": fit_exponent(tokens[-2:], [r.get(fig) for r in ok[-2:]])}
                    for fig in FIGURES}
    return out


def run_sweep(families, sizes, cfg, progress=None):
    """Benchmark each family at each image size (ascending); returns (rows, exponents)."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown sweep famil{'ies' if len(unknown) > 1 else 'y'} {unknown}; "
                         f"choose from {sorted(FAMILIES)}")
    bad = [s for s in sizes if s < 4 or s % 4]
    if bad or not sizes:
        raise ValueError(f"sweep sizes must be multiples of the patch size 4, got {bad or sizes}")
    cfg = cfg.resolved()
    say = progress or (lambda msg: None)
    rows = []
    for fam in families:
        name, stopped = FAMILIES[fam], False
        for size in sorted(sizes):
            if stopped:
                rows.append({"sweep_family": fam, "model": name, "img_size": size,
                             "tokens": (size // 4) ** 2, "status": "skipped (a smaller size ran out of memory)"})
                continue
            say(f"sweep {fam} ({name}) at {size} px")
            row = bench_model(name, cfg, img_size=size)
            row["sweep_family"] = fam
            row.setdefault("tokens", (size // 4) ** 2)
            rows.append(row)
            stopped = row["status"] == "oom"
    return rows, exponents(rows)
