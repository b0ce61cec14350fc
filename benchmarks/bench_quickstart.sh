#!/usr/bin/env bash
# Time README command 1 as a new user runs it: a fresh clone, a new venv, pip install from the (warm) pip cache,
# record and analyse. The command is read from README.md (the line after "# 1."), so it cannot drift from it.
#   bash benchmarks/bench_quickstart.sh            # prints install, actlab and total seconds, and the run's size
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/actlab-quickstart.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/actlab"
cd "$work/actlab"
command=$(grep -A1 '^# 1\.' README.md | tail -1)
install=${command%% && OMP_NUM_THREADS=1 *}
run=${command#"$install && "}
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
start=$(date +%s.%N)
bash -c "$install" > install.log 2>&1
installed=$(date +%s.%N)
bash -c ". .venv/bin/activate && $run"
end=$(date +%s.%N)
printf 'install %.1f s, record + analyze %.1f s, total %.1f s (target: total <= 180 s, record + analyze <= 60 s)\n' \
  "$(echo "$installed - $start" | bc)" "$(echo "$end - $installed" | bc)" "$(echo "$end - $start" | bc)"
echo "runs/quickstart: $(du -sh runs/quickstart | cut -f1) (target <= 100 MB); load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
