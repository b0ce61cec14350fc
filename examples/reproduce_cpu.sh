#!/usr/bin/env bash
# Laptop protocol of the study on CPU:
#   a class-stratified 10,000-image subset of the CIFAR-10 training set (1,000 per class), 30% label noise
#   (other classes), MLP7, MLP5 and MLP3 of width 512, Adam lr 1e-4, batch 128, $EPOCHS epochs (default 600),
#   activations of 1,000 clean, 1,000 noisy and 1,000 test probes recorded at 40 log-spaced epochs,
#   evaluation on all 10,000 test images every epoch; then `actlab analyze` for each run and
#   `actlab compare` of the three.
#
#   ACTLAB_DATA=/path/holding/cifar-10-batches-bin bash examples/reproduce_cpu.sh     # all three models
#   bash examples/reproduce_cpu.sh mlp5                                               # one model
#
# Every setting is a flag of `actlab record`; the runs land in $RUNS (default runs/cpu).
set -euo pipefail
ACTLAB=${ACTLAB:-actlab}
EPOCHS=${EPOCHS:-600}
RUNS=${RUNS:-runs/cpu}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp7 mlp5 mlp3)

for model in "${models[@]}"; do
  $ACTLAB record --model "$model" --dataset cifar10 --train-size 10000 --noise 0.3 --width 512 --lr 1e-4 \
    --batch-size 128 --epochs "$EPOCHS" --record-epochs log:40 --device cpu --out "$RUNS/$model" --overwrite
  $ACTLAB analyze "$RUNS/$model" --no-progress
done
if [ ${#models[@]} -gt 1 ]; then
  $ACTLAB compare "${models[@]/#/$RUNS/}" --out "$RUNS/compare"
fi
