#!/usr/bin/env bash
# The two equal-budget compare tables of issue 23, one after the other (each resumable: rerun to complete).
cd /work/meas
export MIXLAB_DATA=/work/shared/data PYTHONPATH=src
M=attention,token_mlp,nin_gating,glu_gating,aff,pooling,identity,random,dwconv
/work/main/.venv/bin/mixlab compare --mixers $M --data cifar10-jpeg --skeleton small --budget 5e12flops --seeds 3 \
  --recipe strong --batch-size 128 --baseline attention --workers 2 --threads-per-run 1 \
  --out docs/results/compare-cifar10-jpeg
/work/main/.venv/bin/mixlab compare --mixers $M --data fashion-mnist --skeleton demo --budget 1e12flops --seeds 3 \
  --recipe strong --batch-size 128 --baseline attention --workers 2 --threads-per-run 1 \
  --out docs/results/compare-fashion-mnist
