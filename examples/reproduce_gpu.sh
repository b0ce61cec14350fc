#!/usr/bin/env bash
# Full-scale protocol of the study on one CUDA GPU (sized for an H100-class card):
#   all 50,000 CIFAR-10 training images, 30% label noise (other classes), MLP7, MLP5 and MLP3 of width 512,
#   Adam lr 1e-4, batch 128, $EPOCHS epochs (default 1000), activations recorded at 60 log-spaced epochs,
#   then `actlab analyze` for each run and `actlab compare` of the three.
#
#   ACTLAB_DATA=/path/holding/cifar-10-batches-bin bash examples/reproduce_gpu.sh            # all three models
#   EPOCHS=300 bash examples/reproduce_gpu.sh mlp7                                         # one model, shorter
#
# Every setting is a flag of `actlab record`; the runs land in $RUNS (default runs/gpu).
set -euo pipefail
ACTLAB=${ACTLAB:-actlab}
EPOCHS=${EPOCHS:-1000}
RUNS=${RUNS:-runs/gpu}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp7 mlp5 mlp3)

for model in "${models[@]}"; do
  $ACTLAB record --model "$model" --dataset cifar10 --noise 0.3 --width 512 --lr 1e-4 --batch-size 128 \
    --epochs "$EPOCHS" --record-epochs log:60 --device cuda --out "$RUNS/$model" --overwrite
  $ACTLAB analyze "$RUNS/$model" --no-progress
done
if [ ${#models[@]} -gt 1 ]; then
  $ACTLAB compare "${models[@]/#/$RUNS/}" --out "$RUNS/compare"
fi
