#!/usr/bin/env bash
# Venv size and install time of each install, as a new user makes it: a fresh clone, a new venv, pip install from
# the (warm) pip cache. "analysis" is README command 1's install without the extra (no torch); "record" adds it.
#   bash benchmarks/bench_install.sh            # one line per install: seconds, venv size, torch build
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/actlab-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/actlab"
cd "$work/actlab"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $(python3 --version)"
for install in "." ".[record]"; do
  venv="$work/venv-$(echo "$install" | tr -dc 'a-z')"
  start=$(date +%s.%N)
  python3 -m venv "$venv" && "$venv/bin/pip" install -q -e "$install" > "$venv.log" 2>&1
  end=$(date +%s.%N)
  torch=$("$venv/bin/python" -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "no torch")
  printf "pip install -e '%s': %.1f s, venv %s MB (%s)\n" "$install" "$(echo "$end - $start" | bc)" \
    "$(( $(du -sk "$venv" | cut -f1) / 1024 ))" "$torch"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
