#!/usr/bin/env bash
# The recipe comparison of docs/RESULTS.md ("The strong recipe against the mixlab recipe: ViT-tiny, 40 epochs"):
# vit_tiny with 16 tokens (patch 7 on Fashion-MNIST's 28 px, patch 8 on CIFAR-10's 32 px) trained with recipe
# mixlab and recipe strong at the same budget (the same stratified 5,000-image subset, batch 128, 40 epochs),
# 2 seeds, on Fashion-MNIST and CIFAR-10 (JPEG). The number reported is the last epoch's test top-1.
# Run directories go to $RUNS (default runs/strong-tiny; weights and trainer state stay there); the small files
# (config.json, metrics.csv, summary.json, curves.png) are copied next to this script. Re-running skips
# finished runs and resumes an interrupted one.
# Usage: MIXLAB_DATA=/path/to/data bash docs/results/strong-tiny/run.sh
# (here: DATASETS=fashion-mnist and DATASETS=cifar10-jpeg as two jobs side by side, each OMP_NUM_THREADS=1,
# niced, on the shared 2-core machine)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-runs/strong-tiny}
mixlab=${MIXLAB:-mixlab}
for data in ${DATASETS:-fashion-mnist cifar10-jpeg}; do
  if [ "$data" = fashion-mnist ]; then kw='{"patch_size": 7}'; else kw='{"patch_size": 8}'; fi
  for seed in 0 1; do
    for recipe in mixlab strong; do
      name=$data-$recipe-s$seed
      if [ -f "$here/$name/summary.json" ] && grep -q '"completed": true' "$here/$name/summary.json"; then continue; fi
      if [ -f "$runs/$name/config.json" ]; then
        $mixlab train --resume "$runs/$name"
      else
        $mixlab train --model vit_tiny --model-kwargs "$kw" --data "$data" --recipe "$recipe" --seed "$seed" \
          --batch-size 128 --subset 5000 --epochs 40 --device cpu --out "$runs/$name"
      fi
      mkdir -p "$here/$name"
      cp "$runs/$name"/{config.json,metrics.csv,summary.json,curves.png} "$here/$name/"
    done
  done
done
