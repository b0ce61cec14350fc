#!/usr/bin/env bash
# The study with seeds, sized for 2 CPU cores: MLP7, MLP5 and MLP3, each as one ensemble of 5 seeds
# (`actlab record --seeds 0-4`: one process, 5 replicas with their own initialisation and batch order,
# the same noisy labels and probes), on a class-stratified 2,000-image subset of the CIFAR-10 training
# set (200 per class), 30% label noise (other classes), width 512, Adam lr 1e-4, batch 128, $EPOCHS
# epochs (default 150: the noisy labels of this subset are memorised by about epoch 40), evaluated on a
# class-stratified 2,000-image test subset every epoch, activations of 200 clean, 200 noisy and 200
# test probes recorded at 24 log-spaced epochs; then `actlab analyze` of each ensemble (medians and
# intervals over the seeds) and `actlab compare` of the three. docs/reproduction.md reports what it gave.
#
#   ACTLAB_DATA=/path/holding/cifar-10-batches-bin bash examples/reproduce_seeds.sh     # all three models
#   bash examples/reproduce_seeds.sh mlp5                                               # one model
#
# Every setting is a flag of `actlab record`; the runs land in $RUNS (default runs/seeds).
set -euo pipefail
ACTLAB=${ACTLAB:-actlab}
EPOCHS=${EPOCHS:-150}
SEEDS=${SEEDS:-0-4}
RUNS=${RUNS:-runs/seeds}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp7 mlp5 mlp3)

for model in "${models[@]}"; do
  $ACTLAB record --model "$model" --dataset cifar10 --train-size 2000 --test-size 2000 --noise 0.3 --width 512 \
    --lr 1e-4 --batch-size 128 --epochs "$EPOCHS" --seeds "$SEEDS" --record-epochs log:24 \
    --probe-clean 200 --probe-noisy 200 --probe-test 200 --device cpu --out "$RUNS/$model"
  $ACTLAB analyze "$RUNS/$model" --no-progress
done
if [ ${#models[@]} -gt 1 ]; then
  $ACTLAB compare "${models[@]/#/$RUNS/}" --out "$RUNS/compare"
fi
