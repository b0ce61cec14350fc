#!/usr/bin/env bash
# Issue 20's GPU checks in one run: the CUDA tests, where observe's whole-loop cost comes from (bench_observe.py),
# the recorder's overheads P4/P5/P6 (bench_recorder.py), and an ensemble replica against its single run with
# default settings and with TF32 off and deterministic algorithms (bench_ensemble.py --exact).
#   bash benchmarks/gpu_issue20.sh          # on a GPU: about 4 minutes on an H200
#   bash benchmarks/gpu_issue20.sh cpu      # the same commands at tiny sizes on the CPU (a check of the script)
#   STEPS="tests observe" ROUNDS=4 bash benchmarks/gpu_issue20.sh   # some steps (tests observe recorder ensemble); rounds
# Each command is printed before its output with the GPU, the cores, the load average and the time, and after it
# its exit status; a command stopped at its time limit reads exit 124.
set -uo pipefail
steps=" ${STEPS:-tests observe recorder ensemble} "
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [[ "${1:-cuda}" == cpu ]]; then
  device=cpu; observe="--n-train 1024 --width 16 --epochs 2 --rounds 1 --threads 1"
  recorder="--n-train 512 --epochs 2 --width 16 --threads 1"; ensemble="--replicas 2 --n-train 256 --n-test 64 --epochs 1 --width 32 --threads 1"
else
  device=cuda; observe="--n-train 20000 --width 512 --epochs 8 --rounds ${ROUNDS:-3}"
  recorder="--n-train 20000 --epochs 8"; ensemble="--n-train 20000 --n-test 5000 --epochs 3"
fi
where() { if command -v nvidia-smi > /dev/null; then nvidia-smi -L | head -1; else echo "no GPU"; fi; }
step() {
  local limit=$1; shift
  echo "# $*"
  echo "# $(where); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
  timeout "$limit" "$@" 2>&1 | grep -v "^actlab record: layers auto records"
  echo "# exit ${PIPESTATUS[0]}"
}
echo "# actlab $(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null), python $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"
if [[ $device == cuda && $steps == *" tests "* ]]; then
  step 40 python3 -m pytest -q tests/test_cuda.py -p no:cacheprovider
fi
if [[ $steps == *" observe "* ]]; then
  step 170 python3 benchmarks/bench_observe.py --device $device $observe
fi
if [[ $steps == *" recorder "* ]]; then
  step 60 python3 benchmarks/bench_recorder.py --device $device $recorder
fi
if [[ $steps == *" ensemble "* ]]; then
  step 35 python3 benchmarks/bench_ensemble.py --device $device $ensemble
  step 35 env CUBLAS_WORKSPACE_CONFIG=:4096:8 python3 benchmarks/bench_ensemble.py --device $device $ensemble --exact
fi
