#!/usr/bin/env bash
# CPU figures of docs/BENCHMARKS.md (2-core CPU machine): every *_paper model, AFF at the paper size and
# AFFNet-T at 32 px, with timm peers; then the token-scaling sweep 32 → 128 px (64 → 1024 tokens).
# Usage: bash benchmarks/cpu.sh [OUT_DIR]   (run from the repository root; about 10 minutes on 2 busy cores)
set -euo pipefail
OUT="${1:-benchmarks/results/cpu}"
MIXLAB="${MIXLAB_CLI:-.venv/bin/mixlab}"
mkdir -p "$OUT"
MODELS=vit_paper,mixer_paper,localvit_paper,ninformer_paper,activator_paper,activator_glu_paper,dia_vit_paper,aff_paper_size,affnet_t
"$MIXLAB" bench --models "$MODELS" --device cpu --img-size 32 --batch-size 16 --repeats 5 \
  --json "$OUT/paper_models.json" --csv "$OUT/paper_models.csv" --plot-dir "$OUT" | tee "$OUT/paper_models.txt"
"$MIXLAB" bench --sweep --families attention,token_mlp,nin_gating,glu_gating,aff --sizes 32,64,128 \
  --device cpu --batch-size 2 --repeats 3 \
  --json "$OUT/sweep.json" --csv "$OUT/sweep.csv" --plot-dir "$OUT" | tee "$OUT/sweep.txt"
