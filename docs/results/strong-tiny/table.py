"""The strong-vs-mixlab ViT-tiny table from the run directories: the last epoch's test top-1, mean ± half the
range over seeds (2 seeds: the two values), its test loss and the training time. (No train-split figure: under
Mixup/CutMix the strong runs' train top-1 is on mixed images, not comparable with the mixlab runs'.)

    python docs/results/strong-tiny/table.py [DIR]     (DIR: where run.sh copied the runs, default this folder)
"""
import json
import statistics
import sys
from pathlib import Path

DATASETS = [("fashion-mnist", "Fashion-MNIST"), ("cifar10-jpeg", "CIFAR-10 (JPEG)")]
RECIPES = ("mixlab", "strong")


def spread(values, digits=2):
    if not values:
        return "not run"
    return (f"{statistics.mean(values):.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f} "
            f"({' / '.join(f'{v:.{digits}f}' for v in values)})")


def main(root):
    root = Path(root)
    print("| dataset | recipe | test top-1, last epoch (%) | test loss | training s (mean) | seeds |")
    print("|---|---|---:|---:|---:|---:|")
    for data, label in DATASETS:
        for recipe in RECIPES:
            runs = sorted(root.glob(f"{data}-{recipe}-s*/summary.json"))
            done = [s for s in (json.loads(p.read_text()) for p in runs) if s.get("completed")]
            print(f"| {label} | {recipe} | {spread([s['test_top1'] for s in done])} | "
                  f"{spread([s['test_loss'] for s in done], 3)} | "
                  f"{statistics.mean([s['train_seconds'] for s in done]) if done else float('nan'):.0f} | "
                  f"{len(done)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
