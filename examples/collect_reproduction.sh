#!/usr/bin/env bash
# Copy what examples/reproduce_seeds.sh wrote into docs/reproduction/seeds/ and render docs/reproduction.md from it.
#
#   bash examples/collect_reproduction.sh                       # runs in runs/seeds, models mlp7 mlp5 mlp3
#   RUNS=/elsewhere/runs/seeds bash examples/collect_reproduction.sh
#
# For each model: the ensemble's summary.json (<model>_summary.json), each seed's summary.json
# (<model>_seed<S>_summary.json) and metrics (<model>_seed<S>_metrics.csv, from the store); MLP7's figures;
# the compare table and figures; the joined early/late memorisation analysis where it was run
# (`python examples/seed_memorisation.py runs/seeds/mlp7 runs/seeds/mlp5 runs/seeds/mlp3
#  --out runs/seeds/memorisation.json --csv runs/seeds/memorisation.csv`). Every required source is checked
# before anything is copied, so a missing output leaves the committed files as they were. Then `python docs/reproduction/render.py --data $DEST` writes
# docs/reproduction.md; commit the page with the files it was rendered from.
set -euo pipefail
RUNS=${RUNS:-runs/seeds}
DEST=${DEST:-docs/reproduction/seeds}
PYTHON=${PYTHON:-python}
MODELS=(mlp7 mlp5 mlp3)
FIGURES=(curves separation_lines large_activation path_attribution)  # MLP7's, as the page shows them
COMPARE_FIGURES=(compare_test_loss compare_separation compare_dynamics)
JOINED=(memorisation.json memorisation.csv)  # optional: the page leaves its section out without them

sources=("$RUNS/compare/table.md")
for figure in "${COMPARE_FIGURES[@]}"; do sources+=("$RUNS/compare/figures/$figure.png"); done
for figure in "${FIGURES[@]}"; do sources+=("$RUNS/mlp7/analysis/figures/$figure.png"); done
for model in "${MODELS[@]}"; do
  sources+=("$RUNS/$model/analysis/summary.json")
  seeds=("$RUNS/$model"/seed*/)
  [ -d "${seeds[0]}" ] || { echo "collect_reproduction: error: no seed folders in $RUNS/$model; run examples/reproduce_seeds.sh first" >&2; exit 2; }
  for seed in "${seeds[@]}"; do sources+=("${seed}analysis/summary.json"); done
done
for source in "${sources[@]}"; do
  [ -f "$source" ] || { echo "collect_reproduction: error: $source is missing; run examples/reproduce_seeds.sh (and its analyze and compare) first" >&2; exit 2; }
done

mkdir -p "$DEST"
cp "$RUNS/compare/table.md" "$DEST/compare_table.md"
for figure in "${COMPARE_FIGURES[@]}"; do cp "$RUNS/compare/figures/$figure.png" "$DEST/$figure.png"; done
for figure in "${FIGURES[@]}"; do cp "$RUNS/mlp7/analysis/figures/$figure.png" "$DEST/mlp7_$figure.png"; done
for model in "${MODELS[@]}"; do
  cp "$RUNS/$model/analysis/summary.json" "$DEST/${model}_summary.json"
  for seed in "$RUNS/$model"/seed*/; do
    name=$(basename "$seed")
    cp "${seed}analysis/summary.json" "$DEST/${model}_${name}_summary.json"
    "$PYTHON" -c 'import sys, actlab; actlab.open_run(sys.argv[1]).metrics.to_dataframe().to_csv(sys.argv[2], float_format="%.9g")' \
      "$seed" "$DEST/${model}_${name}_metrics.csv"
  done
done
for name in "${JOINED[@]}"; do
  if [ -f "$RUNS/$name" ]; then cp "$RUNS/$name" "$DEST/$name"; fi
done
"$PYTHON" docs/reproduction/render.py --data "$DEST"
