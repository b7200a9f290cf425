"""mixlab's training step against timm's at the identical configuration, interleaved in one process.

    PYTHONPATH=src python benchmarks/timm_step_ratio.py [--models vit_tiny,mixer_tiny] [--reps 5] [--strong]

For each model, thread count (1, 2) and batch (16, 128): the mixlab model at 32 px, 3 channels, 10 classes and
its timm peer (`mixlab.bench.peers`: `VisionTransformer` / `MlpMixer` with the same dims, mean pooling, no class
token), each with its own AdamW; a step is forward, loss, backward, optimizer step on one prepared batch. The two
steps alternate (mixlab, timm, mixlab, ...) after 2 warm-up steps each; medians of `reps`. `--strong`: the strong
recipe's step instead (stochastic depth 0.1 in both, soft Mixup targets with label smoothing 0.1). Prints a
markdown table; ratio = mixlab ms ÷ timm ms (1.00 = the same speed, below 1 = mixlab faster), the figure that
shows a regression on a shared machine where absolute times move.
"""
import argparse
import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F


def _step(model, x, target):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, target) if target.dtype == torch.long else \
            torch.sum(-target * F.log_softmax(logits, -1), -1).mean()
        loss.backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vit_tiny,mixer_tiny")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="16,128")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--strong", action="store_true")
    args = ap.parse_args()
    from mixlab import create_model
    from mixlab.bench.peers import create_peer, peer_config
    drop_path = 0.1 if args.strong else 0.0
    print(f"torch {torch.__version__}, {'strong-recipe step' if args.strong else 'plain step'}, reps {args.reps}")
    print("| model | threads | batch | mixlab ms | timm ms | mixlab ÷ timm |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            for batch in (int(b) for b in args.batches.split(",")):
                torch.manual_seed(0)
                ours = create_model(name, num_classes=10, in_chans=3, img_size=32, drop_path_rate=drop_path).train()
                peer = create_peer(dataclasses.replace(peer_config(ours), drop_path=drop_path)).train()
                x = torch.randn(batch, 3, 32, 32)
                y = torch.randint(0, 10, (batch,))
                if args.strong:   # a Mixup batch: λ·ỹ + (1 − λ)·ỹ_reversed, ỹ smoothed by 0.1
                    soft = F.one_hot(y, 10).float() * 0.9 + 0.01
                    y = 0.7 * soft + 0.3 * soft.flip(0)
                steps = [_step(ours, x, y), _step(peer, x, y)]
                for fn in steps:
                    fn(), fn()
                times = [[], []]
                for _ in range(args.reps):
                    for i, fn in enumerate(steps):
                        t = time.perf_counter()
                        fn()
                        times[i].append(time.perf_counter() - t)
                a, b = (statistics.median(t) * 1e3 for t in times)
                print(f"| {name} | {threads} | {batch} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
