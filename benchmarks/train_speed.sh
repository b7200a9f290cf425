#!/usr/bin/env bash
# GPU training-speed figures of docs/RESULTS.md ("Training engine"), on one H100, from the repository root:
#   bash benchmarks/train_speed.sh [OUT_DIR]     (needs MIXLAB_DATA with cifar10-jpg/, or --data-dir)
# 1. ninformer_paper with the paper recipe on cifar10-jpeg: 100 epochs, batch 128 — wall time and final top-1.
# 2. every *_paper model at batch 2048, compiled, bf16: seconds per epoch of 50k images (train_pass_seconds).
# 3. the data pipeline alone: DeviceLoader vs the official torchvision pipeline, on the GPU.
set -euo pipefail
OUT="${1:-runs/train_speed}"
MIXLAB="${MIXLAB_CLI:-mixlab}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt"
time "$MIXLAB" train --model ninformer_paper --data cifar10-jpeg --recipe paper \
  --device cuda --compile --out "$OUT/ninformer_paper-paper-c10" 2>&1 | tail -3
for m in vit_paper activator_paper mixer_paper ninformer_paper localvit_paper activator_glu_paper; do
  "$MIXLAB" train --model "$m" --data cifar10-jpeg --recipe paper --batch-size 2048 --epochs 5 \
    --device cuda --compile --out "$OUT/$m-b2048" | tail -1
done
python - "$OUT" <<'PY'
import csv, glob, os, statistics, sys
for run in sorted(glob.glob(os.path.join(sys.argv[1], "*-b2048"))):
    rows = list(csv.DictReader(open(os.path.join(run, "metrics.csv"))))
    steady = [float(r["train_pass_seconds"]) for r in rows[1:]]       # epoch 1 includes compilation
    print(f"{os.path.basename(run):<28} {statistics.median(steady):.3f} s/epoch (median of epochs 2-{len(rows)})")
PY
python benchmarks/loader_speed.py --data cifar10-jpeg --batch-size 128 --device cuda --workers 8
