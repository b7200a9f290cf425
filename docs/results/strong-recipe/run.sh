#!/usr/bin/env bash
# The recipe comparison of docs/RESULTS.md ("The strong recipe"): vit_demo trained with recipe mixlab and
# recipe strong at the same budget (same images, batch, epochs), 2 seeds, on Fashion-MNIST and CIFAR-10 (JPEG).
# Run directories go to runs/strong-recipe/ (weights and trainer state stay there); the small files
# (config.json, metrics.csv, summary.json, curves.png) are copied next to this script. Re-running skips
# finished runs. Usage: MIXLAB_DATA=/path/to/data bash docs/results/strong-recipe/run.sh
# (here: the two datasets as two jobs side by side, DATASETS=fashion-mnist and DATASETS=cifar10-jpeg, each
# with OMP_NUM_THREADS=1, niced, on the shared 2-core machine)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-runs/strong-recipe}
mixlab=${MIXLAB:-mixlab}
for data in ${DATASETS:-fashion-mnist cifar10-jpeg}; do
  if [ "$data" = fashion-mnist ]; then extra=(--subset 5000 --epochs 4); kw='{}';
  else extra=(--subset 4000 --epochs 3); kw='{"patch_size": 8}'; fi
  for seed in 0 1; do
    for recipe in mixlab strong; do
      name=$data-$recipe-s$seed
      if [ -f "$here/$name/summary.json" ] && grep -q '"completed": true' "$here/$name/summary.json"; then continue; fi
      $mixlab train --model vit_demo --model-kwargs "$kw" --data "$data" --recipe "$recipe" --seed "$seed" \
        --batch-size 256 "${extra[@]}" --device cpu --out "$runs/$name" --overwrite
      mkdir -p "$here/$name"
      cp "$runs/$name"/{config.json,metrics.csv,summary.json,curves.png} "$here/$name/"
    done
  done
done
