#!/usr/bin/env bash
# Search for epoch-wise double descent of the test loss on CPU, one factor at a time around a small
# reference: MLP7, width 512, Adam lr 1e-4, batch 128, a 2,000-image class-stratified CIFAR-10 subset with
# 30% label noise, evaluated every epoch on a 2,000-image class-stratified test subset; the last two settings
# repeat the weight-decay setting with MLP5 and MLP3, for the depth contrast. Each setting is one
# `actlab record` (metrics every epoch; activations of 200 probes per group at 12 log-spaced epochs) and one
# `actlab analyze`; `actlab compare` of all settings gives docs/reproduction/search/table.md.
#
#   ACTLAB_DATA=/path/holding/cifar-10-batches-bin bash examples/dd_search.sh            # every setting
#   bash examples/dd_search.sh lr1e-3 w128                                              # some of them
#
# A setting whose analysis already exists is skipped, so the search can be split across processes
# (OMP_NUM_THREADS=1 per process on a 2-core machine) and resumed. Runs land in $RUNS (default runs/dd-search).
set -euo pipefail
ACTLAB=${ACTLAB:-actlab}
RUNS=${RUNS:-runs/dd-search}
declare -A SETTINGS=(
  [reference]="--epochs 2000"
  [lr1e-3]="--lr 1e-3 --epochs 600"
  [lr1e-5]="--lr 1e-5 --epochs 1500"
  [w128]="--width 128 --epochs 1000"
  [w1024]="--width 1024 --epochs 400"
  [b32]="--batch-size 32 --epochs 600"
  [b512]="--batch-size 512 --epochs 1000"
  [wd5e-4]="--weight-decay 5e-4 --epochs 1000"
  [n5000]="--train-size 5000 --epochs 500"
  [mlp5-wd5e-4]="--model mlp5 --weight-decay 5e-4 --epochs 1000"
  [mlp3-wd5e-4]="--model mlp3 --weight-decay 5e-4 --epochs 1000"
)
ORDER=(reference lr1e-3 lr1e-5 w128 w1024 b32 b512 wd5e-4 n5000 mlp5-wd5e-4 mlp3-wd5e-4)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")

for name in "${names[@]}"; do
  [ -n "${SETTINGS[$name]+set}" ] || { echo "dd_search.sh: unknown setting '$name'; choose from ${ORDER[*]}" >&2; exit 2; }
  [ -f "$RUNS/$name/analysis/summary.json" ] && continue
  # shellcheck disable=SC2086  # the setting's flags are meant to split
  $ACTLAB record --model mlp7 --dataset cifar10 --train-size 2000 --test-size 2000 --noise 0.3 --width 512 \
    --lr 1e-4 --batch-size 128 --record-epochs log:12 --probe-clean 200 --probe-noisy 200 --probe-test 200 \
    --device cpu --no-progress --out "$RUNS/$name" --overwrite ${SETTINGS[$name]}
  $ACTLAB analyze "$RUNS/$name" --no-progress --format png
done
if [ $# -eq 0 ]; then
  $ACTLAB compare "${ORDER[@]/#/$RUNS/}" --out "$RUNS/compare" --format png
fi
