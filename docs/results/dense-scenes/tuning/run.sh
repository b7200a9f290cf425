#!/bin/sh
# The choices made on the tuning scenes (generator seed 1: an independent draw; its val split is the validation
# split; the test scenes of ../run.sh chose nothing). 2026-12-03 09:12-10:14 UTC, 1 thread each, the shared CPU.
export OMP_NUM_THREADS=1
T=/tmp/dense-tune
mixlab data make-scenes --out $T --train 256 --val 64 --size 64 --classes 4 --seed 1
common="--task segmentation --data $T/VOC --recipe mixlab --img-size 64 --batch-size 32 --lr 2e-3 --seed 0 --device cpu"
# AFFNet-T under DeepLabv3 at output stride 8 (the new default): 8 and 24 epochs (aff-os8, aff-os8-24)
mixlab train --model affnet_t $common --epochs 8 --out aff-os8
mixlab train --model affnet_t $common --epochs 24 --out aff-os8-24
det="--task detection --data $T/COCO --recipe mixlab --img-size 64 --epochs 16 --batch-size 32 --seed 0 --device cpu"
# RetinaNet on AFFNet-T at output stride 32 (the detection default before 57e613a) and 8, lr 2e-3
mixlab train --model affnet_t --model-kwargs '{"output_stride": 32}' $det --lr 2e-3 --out det-os32
mixlab train --model affnet_t --model-kwargs '{"output_stride": 8}' $det --lr 2e-3 --out det-os8
# the detection lr at output stride 8 (the default since 57e613a): 5e-4, 1e-3 (2e-3 is det-os8)
mixlab train --model affnet_t $det --lr 5e-4 --out det-os8-lr5e-4
mixlab train --model affnet_t $det --lr 1e-3 --out det-os8-lr1e-3
