"""Dropout masks on a CPU: the paper configs' nn.Dropout(0.5) against mixlab's FastDropout (`fast_dropout`).

    PYTHONPATH=src python benchmarks/dropout_mask.py [--threads 1] [--batch 128] [--reps 7]

Per model (32 px, 3 channels, 10 classes): a training step (forward, cross-entropy, backward, AdamW) on one
prepared batch with the model's nn.Dropout modules, and the same step after `use_fast_dropout` (a deep copy:
the same weights), timed interleaved in one process (A, B, A, B, ...; median of reps, after 2 warm-up steps
each). Also the mask alone on one [batch, 65, 512] activation: `bernoulli_` (what nn.Dropout draws on a CPU)
against `fast_dropout_mask`. Prints a markdown table; ratios are the finding on a shared machine.
"""
import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _step_fn(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--models", default="mixer_paper,vit_paper")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mixlab import create_model
    from mixlab.layers.dropout import fast_dropout_mask, use_fast_dropout

    print(f"threads {args.threads}, batch {args.batch}, reps {args.reps}, torch {torch.__version__}")
    print("| model | nn.Dropout step ms | FastDropout step ms | speed-up |")
    print("|---|---:|---:|---:|")
    for name in args.models.split(","):
        torch.manual_seed(0)
        plain = create_model(name, num_classes=10, in_chans=3, img_size=32).train()
        fast = copy.deepcopy(plain)
        swapped = use_fast_dropout(fast)
        x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
        steps = {"plain": _step_fn(plain, x, y), "fast": _step_fn(fast, x, y)}
        for fn in steps.values():
            fn(), fn()
        times = {k: [] for k in steps}
        for _ in range(args.reps):
            for k, fn in steps.items():
                times[k].append(_time(fn))
        a, b = (statistics.median(times[k]) * 1e3 for k in ("plain", "fast"))
        print(f"| {name} ({swapped} dropouts) | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    act = torch.empty(args.batch, 65, 512)
    masks = {"bernoulli_": lambda: act.bernoulli_(0.5), "fast_dropout_mask": lambda: fast_dropout_mask(act.shape, 0.5)}
    times = {k: [] for k in masks}
    for _ in range(args.reps):
        for k, fn in masks.items():
            times[k].append(_time(fn))
    a, b = (statistics.median(times[k]) * 1e3 for k in masks)
    print(f"\nmask of [{args.batch}, 65, 512]: bernoulli_ {a:.1f} ms, fast_dropout_mask {b:.1f} ms ({a / b:.2f}x)")


if __name__ == "__main__":
    main()
