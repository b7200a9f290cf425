"""Wall time of one small paper table trained one run after another against `--workers K`, in one call.

Each variant is a fresh `mixlab reproduce` process (imports and data loading included) writing its own run
directories; the variants run one after the other, never at the same time, and `--repeats R` interleaves R
rounds of them (the fastest round of each is reported, so a burst of outside load hits no variant alone).
The rows of the variants are compared (final and best top-1 per seed, from the table's JSON) and so are
their metrics.csv losses.

    python benchmarks/table_fanout.py --workers 2 --pinned --out /tmp/fanout
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mixlab.bench.report import cpu_model

TABLE = ["reproduce", "activator", "--datasets", "fashion-mnist", "--models",
         "mixer_paper,activator_glu_paper,vit_paper,activator_paper", "--device", "cpu"]


def load_average():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return ["?"] * 3


def run_variant(name, extra, args, round_):
    out = Path(args.out) / f"{name}-{round_}"
    cmd = [sys.executable, "-m", "mixlab.cli", *TABLE, "--epochs", str(args.epochs), "--subset", str(args.subset),
           "--out", str(out), *(["--batch-size", str(args.batch_size)] if args.batch_size else []), *extra]
    before = load_average()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    rows = json.loads((out / "activator.json").read_text())["rows"]
    losses = {}
    for metrics in sorted(out.glob("fashion-mnist/*/seed*/metrics.csv")):
        with open(metrics) as f:
            losses[metrics.parent.relative_to(out).as_posix()] = [(r["train_loss"], r["test_loss"])
                                                                 for r in csv.DictReader(f)]
    return {"name": name, "command": " ".join(["mixlab", *cmd[3:]]), "seconds": seconds, "load_before": before,
            "load_after": load_average(), "rows": [(r["model"], r["top1_per_seed"], r["best_top1_mean"]) for r in rows],
            "losses": losses}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the paper recipe's 128")
    ap.add_argument("--out", default="runs/bench-fanout")
    ap.add_argument("--pinned", action="store_true",
                    help="also time the sequential table with one thread per run (the --workers runs' count)")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds of all variants (default 1)")
    args = ap.parse_args()
    if Path(args.out).exists() and any(Path(args.out).iterdir()):
        sys.exit(f"{args.out} is not empty: every variant must train from scratch")
    variants = [("sequential", [])]
    if args.pinned:
        variants.append(("sequential-1-thread", ["--threads-per-run", "1"]))
    variants.append((f"workers-{args.workers}", ["--workers", str(args.workers)]))
    started = time.strftime('%Y-%m-%d %H:%M %Z')
    rounds = [[run_variant(name, extra, args, k) for name, extra in variants] for k in range(args.repeats)]
    results = []
    for i in range(len(variants)):   # the fastest round of each variant, with every round's time kept
        tries = [r[i] for r in rounds]
        best = min(tries, key=lambda r: r["seconds"])
        results.append(dict(best, all_seconds=[round(t["seconds"], 1) for t in tries]))
    base = results[0]
    # a CPU run's numbers depend on its intra-op thread count: compare each variant with the sequential one
    # of the same count (the --workers runs get ⌊threads / K⌋ each)
    same_threads = results[1] if args.pinned else base
    print(f"{cpu_model()}, {os.cpu_count()} cores; started {started}; table: 4 runs (activator table, "
          f"Fashion-MNIST subset {args.subset}, {args.epochs} epochs, batch {args.batch_size or 128}, CPU), variants "
          f"run one after another, "
          f"{args.repeats} interleaved round(s)")
    print("| variant | wall s (fastest; all rounds) | vs sequential | load average before → after (fastest) | "
          "rows = sequential | losses = sequential | losses = same-thread sequential |")
    print("|---|---:|---:|---|---|---|---|")
    for r in results:
        print(f"| `{r['command']}` | {r['seconds']:.1f}; {r['all_seconds']} | {r['seconds'] / base['seconds']:.2f}× | "
              f"{' '.join(r['load_before'])} → {' '.join(r['load_after'])} | {r['rows'] == base['rows']} | "
              f"{r['losses'] == base['losses']} | "
              f"{r['losses'] == (base if r is base else same_threads)['losses']} |")
    json_path = Path(args.out) / "fanout.json"
    json_path.write_text(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "results": results}, indent=1))
    print(f"written: {json_path}")


if __name__ == "__main__":
    main()
