#!/usr/bin/env bash
# The CPU speed run (issue 23): an attention-free mixer (metaformer_speed: hierarchical MetaFormer with the
# depth-wise convolution token mixer) on CIFAR-10 (cifar10-jpeg here) with the `speed` recipe, on 2 CPU cores.
# Run directory: docs/results/speed-run/metaformer_speed-cifar10-jpeg-s0 (weights are not committed).
set -euo pipefail
cd "$(dirname "$0")/../../.."
mixlab train --model metaformer_speed --data cifar10-jpeg --recipe speed --seed 0 --eval-batch-size 250 \
    --device cpu --out docs/results/speed-run/metaformer_speed-cifar10-jpeg-s0 "$@"
