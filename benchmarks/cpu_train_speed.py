"""What trains fastest on this CPU: intra-op threads × precision × memory format × torch.compile, per model.

    python benchmarks/cpu_train_speed.py                       # the demo models at Fashion-MNIST size
    python benchmarks/cpu_train_speed.py --models vit_paper --img-size 28 --in-chans 1 --json out.json

Every variant of one model is measured in the same call (the same process, one after another), and each is
reported as a ratio to eager fp32 at the largest thread count, so the choice is made on numbers taken under
the same conditions. A training step is forward + cross-entropy + backward + Adam step (mixlab.bench), at the
demo's batch size. bf16 is autocast with fp32 weights (it pays off only on CPUs with native bf16:
AVX512-BF16 or AMX); channels-last only changes the convolutions (patch embedding, AFF); compile is
`torch.compile` (inductor, C++ codegen on CPU; its first call, which includes compilation, is reported
apart). The load average is recorded beside the figures: timings on a busy machine are not comparable.
"""
import argparse
import itertools
import json
import os
import platform
import sys
import time

import torch

from mixlab.bench import BenchConfig
from mixlab.bench.run import bench_model
from mixlab.device import cpu_has_native_bf16

DEMO_MODELS = ("vit_demo", "mixer_demo", "ninformer_demo", "activator_demo", "aff_demo")


def variants(max_threads, compile_too):
    threads = sorted({1, max_threads})
    out = []
    for t, precision, channels_last in itertools.product(threads, ("fp32", "bf16"), (False, True)):
        out.append(dict(threads=t, precision=precision, channels_last=channels_last, compile=False))
    if compile_too:
        for precision in ("fp32", "bf16"):
            out.append(dict(threads=max_threads, precision=precision, channels_last=False, compile=True))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(DEMO_MODELS))
    p.add_argument("--img-size", type=int, default=28)
    p.add_argument("--in-chans", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants (slow to build)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    max_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        base = None
        for v in variants(max_threads, not args.no_compile):
            cfg = BenchConfig(device="cpu", batch_size=args.batch_size, img_size=args.img_size,
                              in_chans=args.in_chans, num_classes=args.num_classes, warmup=args.warmup,
                              repeats=args.repeats, memory=False, **v).resolved()
            t0 = time.perf_counter()
            row = bench_model(name, cfg)
            row["wall_s"] = time.perf_counter() - t0
            row["loadavg_1min"] = os.getloadavg()[0]
            rows.append(row)
            if v == dict(threads=max_threads, precision="fp32", channels_last=False, compile=False):
                base = row
            print(f"{name:<16} threads {v['threads']}  {v['precision']}  "
                  f"{'channels-last' if v['channels_last'] else 'contiguous   '}  "
                  f"{'compiled' if v['compile'] else 'eager   '}  train {row['train_throughput']:8.0f} img/s  "
                  f"infer {row['infer_throughput']:8.0f} img/s  (load {row['loadavg_1min']:.1f})",
                  file=sys.stderr, flush=True)
        for row in rows:
            if row["model"] == name and base:
                row["train_ratio"] = row["train_throughput"] / base["train_throughput"]
                row["infer_ratio"] = row["infer_throughput"] / base["infer_throughput"]

    print(f"\n| model | threads | precision | memory format | compile | train img/s | × eager fp32 | infer img/s |")
    print("|---|---|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['threads']} | {r['precision']} | "
              f"{'channels-last' if r['channels_last'] else 'contiguous'} | {'yes' if r['compile'] else 'no'} | "
              f"{r['train_throughput']:.0f} | {r.get('train_ratio', float('nan')):.2f} | {r['infer_throughput']:.0f} |")
    env = {"cpu": platform.processor() or platform.machine(), "cores": max_threads,
           "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
           "batch_size": args.batch_size, "img_size": args.img_size, "in_chans": args.in_chans,
           "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}
    print(f"\n{env}")
    if args.json:
        from mixlab.fileio import write_json
        write_json(args.json, {"env": env, "rows": rows})


if __name__ == "__main__":
    main()
