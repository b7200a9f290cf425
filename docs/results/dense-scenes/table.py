"""The dense-scenes table from the run directories: mean ± half the range over seeds (2 seeds: the two values).

    python docs/results/dense-scenes/table.py [RUNS]     (RUNS: run.sh's OUT, default docs/results/dense-scenes)
"""
import json
import statistics
import sys
from pathlib import Path

ROWS = [("affnet_t", "AFFNet-T (`affnet_t`; DeepLabv3 at output stride 8)"),
        ("resnet164", "CIFAR ResNet-20, bottleneck (`resnet164`, `{\"depth\": 20}`)"),
        ("dia_resnet164", "DIA-ResNet-20 (`dia_resnet164`, `{\"depth\": 20}`)"),
        ("vit_tiny", "ViT-tiny, patch 4 (`vit_tiny`, `{\"patch_size\": 4}`)"),
        ("affnet_t-frozen", "baseline: the head on a frozen random AFFNet-T (`--freeze-backbone`)"),
        ("resnet164-frozen", "baseline: the head on a frozen random ResNet-20 (`--freeze-backbone`)"),
        ("vit_tiny-frozen", "baseline: the head on a frozen random ViT-tiny (`--freeze-backbone`)")]
METRICS = {"segmentation": ("test_miou", "test_pixel_acc"), "detection": ("test_map", "test_map50")}


def cell(values):
    if not values:
        return "not run"
    mean = statistics.mean(values)
    spread = (max(values) - min(values)) / 2
    return f"{mean:.2f} ± {spread:.2f} ({' / '.join(f'{v:.2f}' for v in values)})"


def main(root):
    root = Path(root)
    print("| backbone | seg mIoU | seg pixel acc | det mAP | det mAP@0.5 | seeds (seg, det) |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, label in ROWS:
        model, _, frozen = key.partition("-")
        cells, seeds = [], []
        for task, metrics in METRICS.items():
            name = f"{model}-{task}" + ("-frozen" if frozen else "")
            runs = sorted(root.glob(f"s*/{name}/summary.json"))
            found = [s for s in (json.loads(p.read_text()) for p in runs) if s.get("completed")]
            for metric in metrics:
                cells.append(cell([s[metric] for s in found if s.get(metric) is not None]))
            seeds.append(str(len(found)))
        print(f"| {label} | " + " | ".join(cells) + f" | {', '.join(seeds)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
