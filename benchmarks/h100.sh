#!/usr/bin/env bash
# GPU figures of docs/BENCHMARKS.md, for one H100 (not yet measured: no GPU was available when the doc was
# written). Every *_paper model and AFFNet-T at 32 px, fp32 and bf16, eager and compiled; then the
# token-scaling sweep 32 → 512 px (64 → 16384 tokens): sizes that do not fit are recorded as 'oom' and
# larger ones skipped, so the table ends at the largest size that fits.
# Usage: bash benchmarks/h100.sh [OUT_DIR]   (run from the repository root)
set -euo pipefail
OUT="${1:-benchmarks/results/h100}"
MIXLAB="${MIXLAB_CLI:-.venv/bin/mixlab}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt"
MODELS=vit_paper,mixer_paper,localvit_paper,ninformer_paper,activator_paper,activator_glu_paper,dia_vit_paper,aff_paper_size,affnet_t
for prec in fp32 bf16; do
  "$MIXLAB" bench --models "$MODELS" --device cuda --img-size 32 --batch-size 256 --precision "$prec" \
    --json "$OUT/paper_models_$prec.json" --csv "$OUT/paper_models_$prec.csv" --plot-dir "$OUT/$prec" \
    | tee "$OUT/paper_models_$prec.txt"
done
"$MIXLAB" bench --models "$MODELS" --device cuda --img-size 32 --batch-size 256 --precision bf16 --compile \
  --json "$OUT/paper_models_bf16_compile.json" | tee "$OUT/paper_models_bf16_compile.txt"
"$MIXLAB" bench --sweep --families attention,token_mlp,nin_gating,glu_gating,aff --sizes 32,64,128,256,512 \
  --device cuda --batch-size 64 --precision bf16 \
  --json "$OUT/sweep.json" --csv "$OUT/sweep.csv" --plot-dir "$OUT/sweep" | tee "$OUT/sweep.txt"
