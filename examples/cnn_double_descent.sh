#!/usr/bin/env bash
# Epoch-wise double descent of a convolutional network, in the setting of Nakkiran et al. 2019 ("Deep Double
# Descent"): 20% label noise (other classes), Adam lr 1e-4, batch 128, random crop (4-pixel padding) plus
# horizontal flip on the device, on CIFAR-10; the channel means of every ReLU and the logits recorded at
# log-spaced epochs, then `actlab analyze`.
#
# CPU-sized by default (about 20 minutes on one core): cnn5 of width k=8 on a class-stratified 2,000-image
# training subset and a 1,000-image test subset, $EPOCHS epochs (default 40), 200 probes per group.
#
#   ACTLAB_DATA=/path/holding/cifar-10-batches-bin bash examples/cnn_double_descent.sh
#   MODEL=resnet18k WIDTH=16 bash examples/cnn_double_descent.sh
#
# Full size, as the paper (on a GPU; 4,000 epochs in the paper, the peak sits in the first few hundred):
#
#   FULL=1 MODEL=resnet18k WIDTH=64 EPOCHS=1000 bash examples/cnn_double_descent.sh
#
# which drops --train-size and --test-size (all 50,000 and 10,000 images) and records 1,000 probes per group
# at 40 log-spaced epochs. The run lands in $RUNS/<model>-k<width> (default runs/cnn_dd).
set -euo pipefail
ACTLAB=${ACTLAB:-actlab}
MODEL=${MODEL:-cnn5}
WIDTH=${WIDTH:-8}
RUNS=${RUNS:-runs/cnn_dd}
if [ "${FULL:-0}" = 1 ]; then
  EPOCHS=${EPOCHS:-1000}
  size=(--probe-clean 1000 --probe-noisy 1000 --probe-test 1000 --record-epochs log:40 --device auto)
else
  EPOCHS=${EPOCHS:-40}
  size=(--train-size 2000 --test-size 1000 --probe-clean 200 --probe-noisy 200 --probe-test 200
        --record-epochs log:20 --device cpu)
fi
run="$RUNS/$MODEL-k$WIDTH"

$ACTLAB record --model "$MODEL" --width "$WIDTH" --dataset cifar10 --noise 0.2 --lr 1e-4 --batch-size 128 \
  --augment crop-flip --conv-reduce mean --epochs "$EPOCHS" "${size[@]}" --out "$run"
$ACTLAB analyze "$run" --no-progress
