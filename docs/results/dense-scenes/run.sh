#!/bin/sh
# Dense prediction on generated scenes (docs/dense.md), short CPU budgets, 1 thread each, nice -n 19, on the
# shared 2-core machine while other timed measurements ran (so seconds are not throughput figures).
set -e
export OMP_NUM_THREADS=1
S=/tmp/dense-scenes
OUT=${OUT:-/tmp/dense-runs}
nice -n 19 mixlab data make-scenes --out $S --train 256 --val 64 --size 64 --classes 4 --seed 0
# trivial baseline: every pixel background, scored like the runs (val masks resized to 64 px)
nice -n 19 python -c "
import torch; from mixlab.dense import read_dense; from mixlab.dense.loader import DenseLoader
from mixlab.dense.metrics import confusion_matrix, segmentation_scores
ds = read_dense('$S/VOC', 'segmentation', 'test'); conf = 0
for x, m in DenseLoader(ds, 64, 64, train=False): conf = conf + confusion_matrix(torch.zeros_like(m), m, ds.num_classes)
print('all-background', segmentation_scores(conf))"
for task in segmentation detection; do
  data=$S/VOC; [ $task = detection ] && data=$S/COCO
  nice -n 19 mixlab train --model affnet_t --data $data --task $task --img-size 64 --epochs 2 --batch-size 32 \
    --lr 2e-3 --seed 0 --device cpu --out $OUT/affnet_t-$task
done
# the comparison (8 epochs, recipe mixlab for every backbone; the ResNet rows were run to completion in a second sitting): affnet_t, vit_tiny (patch 4), a plain CIFAR ResNet and its DIA version (depth 20),
# segmentation (DeepLabv3) and detection (RetinaNet); the two tasks ran side by side, one process each
for task in segmentation detection; do
  data=$S/VOC; [ $task = detection ] && data=$S/COCO
  (for m in affnet_t vit_tiny resnet164 dia_resnet164; do
    kw='{}'; case $m in vit_tiny) kw='{"patch_size": 4}';; *resnet164) kw='{"depth": 20}';; esac
    nice -n 19 mixlab train --model $m --model-kwargs "$kw" --data $data --task $task --recipe mixlab --img-size 64 --epochs 8 \
      --batch-size 32 --lr 2e-3 --seed 0 --device cpu --out $OUT/8ep/$m-$task || echo "FAILED $m $task"
  done) &
done
wait
