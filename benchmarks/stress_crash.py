"""Stress the commit protocol: kill -9 and full disks at random moments and at injected write calls, then resume.

Not run by the test suite. Each trial records a tiny run (``tests/test_crash_safety.py``'s configuration)
in a process forked from a warm fork server (``tests/crashing_actlab.py``), crashes it, checks that the
store (if any) opens, finishes it (``record --resume``, or ``record`` again when no store exists) and
compares it bit for bit with an uninterrupted reference run (metrics but wall_time, every layer's arrays).

Usage::

    PYTHONPATH=. python benchmarks/stress_crash.py [--random 16] [--injected 24] [--twice 8] [--enospc 16] [--seed 0]

The defaults take about five minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import crashing_actlab  # noqa: E402

from actlab.store import METRICS, open_store, store_path  # noqa: E402

ARGS = ["--dataset", "synthetic", "--synthetic", "train=200,test=100,classes=4,shape=1x4x4", "--model", "mlp3",
        "--width", "8", "--epochs", "12", "--record-epochs", "every:3", "--checkpoint-every", "2",
        "--probe-clean", "20", "--probe-noisy", "20", "--probe-test", "20", "--no-progress", "--device", "cpu"]
CALLS = {"put": 266, "replace": 205, "checkpoint": 7, "complete": 1}
"""Calls of each kind in one uninterrupted recording of this configuration (ACTLAB_TEST_CRASH_LOG)."""


def same_run(run: Path, ref: Path) -> bool:
    try:
        view, full = open_store(run), open_store(ref)
        if view.attrs["status"] != "complete" or list(view.epochs) != list(full.epochs):
            return False
        if list(view.metrics["epoch"].values) != list(full.metrics["epoch"].values):
            return False
        for name in METRICS:
            if name != "wall_time" and not np.array_equal(view.metrics[name].values, full.metrics[name].values):
                return False
        return (all(np.array_equal(view.layers[layer]["preact"].values, full.layers[layer]["preact"].values)
                    for layer in full.layer_names)
                and all(np.array_equal(view.parameters[name].values, full.parameters[name].values)
                        for name in full.parameters.data_vars))
    except Exception:
        return False


def found_leftovers(run: Path) -> list[str]:
    found = [str(p) for p in run.parent.iterdir() if p.name.endswith((".partial", ".swap"))]
    if run.is_dir():
        found += [os.path.join(root, name) for root, dirs, files in os.walk(run) for name in dirs + files
                  if name.endswith((".partial", ".swap"))]
    return found


def leftovers(run: Path) -> bool:
    return bool(found_leftovers(run))


def opens(run: Path) -> bool:
    try:
        open_store(run)
        return True
    except Exception:
        return False


class Stress:
    def __init__(self, server: crashing_actlab.Server, root: Path, reference: Path, rng: random.Random) -> None:
        self.server, self.root, self.reference, self.rng = server, root, reference, rng
        self.count = 0
        self.problems: list[str] = []
        self.what = ""

    def new_run(self) -> Path:
        self.count += 1
        self.what = ""
        return self.root / f"run{self.count}"

    def injected(self) -> str:
        kind = self.rng.choice(list(CALLS))
        spec = f"{kind}:{self.rng.randint(1, CALLS[kind])}"
        self.what = f"{self.what} then {spec}" if self.what.startswith("+") else spec
        return spec

    def finish(self, run: Path, tally: Counter) -> None:
        """Resume (or record again when no store exists); count what worked."""
        if store_path(run).exists():
            tally["store existed"] += 1
            tally["store opened"] += opens(run)
            result = self.server.run(["record", "--resume", str(run), "--no-progress"])
        else:
            result = self.server.run(["record", *ARGS, "--out", str(run)])
        tally["resume finished"] += result.returncode == 0
        tally["resume bit-identical"] += result.returncode == 0 and same_run(run, self.reference)
        if leftovers(run):
            self.problems.append(f"{self.what}: leftovers {found_leftovers(run)}")
        else:
            tally["no leftovers after"] += 1
        if result.returncode != 0:
            self.problems.append(f"{self.what}: finishing exited {result.returncode}: {result.stderr.strip()[-300:]}")

    def random_kill(self, tally: Counter, duration: float) -> None:
        run = self.new_run()
        self.what = "random-time kill"
        started = self.server.start((["record", *ARGS, "--out", str(run)], None))
        time.sleep(self.rng.uniform(0.0, duration))
        try:
            os.kill(started.pids[0], signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = started.wait()[0].returncode
        tally["trials"] += 1
        tally["finished before the kill"] += code == 0
        self.finish(run, tally)

    def injected_kill(self, tally: Counter) -> None:
        run = self.new_run()
        result = self.server.run(["record", *ARGS, "--out", str(run)], f"{self.injected()}:kill")
        tally["trials"] += 1
        tally["killed"] += result.returncode == -signal.SIGKILL
        self.finish(run, tally)

    def twice(self, tally: Counter) -> None:
        run = self.new_run()
        self.server.run(["record", *ARGS, "--out", str(run)], f"{self.injected()}:kill")
        self.what = "+" + self.what
        tally["trials"] += 1
        if store_path(run).exists():
            again = self.server.run(["record", "--resume", str(run), "--no-progress"], f"{self.injected()}:kill")
        else:
            again = self.server.run(["record", *ARGS, "--out", str(run)], f"{self.injected()}:kill")
        tally["second run killed"] += again.returncode == -signal.SIGKILL
        self.finish(run, tally)

    def enospc(self, tally: Counter) -> None:
        run = self.new_run()
        result = self.server.run(["record", *ARGS, "--out", str(run)], f"{self.injected()}:enospc")
        tally["trials"] += 1
        tally["exit code 3"] += result.returncode == 3
        lines = [line for line in result.stderr.splitlines() if line.startswith("actlab: error:")]
        tally["one error line, no traceback"] += len(lines) == 1 and "Traceback" not in result.stderr
        tally["no leftovers after the failure"] += not leftovers(run)
        self.finish(run, tally)


def table(name: str, tally: Counter) -> str:
    rows = [f"{name}"] + [f"  {key:<34} {value:>5}" for key, value in tally.items()]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random", type=int, default=16, help="kills at random times (default: 16)")
    parser.add_argument("--injected", type=int, default=24, help="kills at random injected write calls (default: 24)")
    parser.add_argument("--twice", type=int, default=8, help="a killed run whose resume is killed too (default: 8)")
    parser.add_argument("--enospc", type=int, default=16, help="full disks at random injected write calls (default: 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="actlab-stress-"))
    server = crashing_actlab.Server(root / "forks", env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    try:
        reference = root / "reference"
        start = time.perf_counter()
        assert server.run(["record", *ARGS, "--out", str(reference)]).returncode == 0
        start = time.perf_counter()  # the first run is slower (caches); time a warm one for the random kills
        assert server.run(["record", *ARGS, "--out", str(root / "timing")]).returncode == 0
        duration = time.perf_counter() - start
        stress = Stress(server, root, reference, rng)
        tallies: dict[str, Counter] = {}
        for name, count, trial in (("random-time kills", args.random, lambda t: stress.random_kill(t, duration)),
                                   ("kills at injected calls", args.injected, stress.injected_kill),
                                   ("kills twice in a row", args.twice, stress.twice),
                                   ("ENOSPC at injected calls", args.enospc, stress.enospc)):
            tally = tallies[name] = Counter()
            for _ in range(count):
                trial(tally)
        print(f"stress_crash: seed {args.seed}, one uninterrupted run {duration:.1f} s, "
              f"total {time.perf_counter() - t0:.0f} s")
        for name, tally in tallies.items():
            print(table(name, tally))
        for problem in stress.problems:
            print("problem:", problem)
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
