"""Stress the commit protocol: kill -9 and full disks at random moments and at injected write calls, then resume.

Not run by the test suite. Each trial records a tiny run (``tests/test_crash_safety.py``'s configuration)
in a process forked from a warm fork server (``tests/crashing_actlab.py``), crashes it, checks that the
store (if any) opens, finishes it (``record --resume``, or ``record`` again when no store exists) and
compares it bit for bit with an uninterrupted reference run (metrics but wall_time, every layer's arrays).

The same for ensembles (``--seeds 0-1``, killed at injected calls), and for ``--overwrite`` of a complete run
and of a complete ensemble recorded with another learning rate, killed at an injected rename (``os.replace``):
the folder must then hold the old recording intact or the new one, which ``record --overwrite`` again or
``record --resume`` finishes; an ensemble may also hold replicas of both recordings (killed between two replicas),
or replicas of another recording than its marker names: ``actlab analyze`` must then refuse it in one line (exit
code 2) instead of analysing it, and ``record --resume``, as that line advises, finishes it.
``--overwrite-first N`` draws the killed rename among the first N renames of the ``--overwrite`` (those of the
replacement itself come first: the new stores are built and swapped in before training starts). The number of calls of each kind in one
uninterrupted recording of each configuration is counted first (``ACTLAB_TEST_CRASH_LOG``), and the injected
call is drawn from it.

Usage::

    PYTHONPATH=. python benchmarks/stress_crash.py [--random 16] [--injected 24] [--twice 8] [--enospc 16]
                                                   [--ensemble 8] [--overwrite 8] [--ensemble-overwrite 8]
                                                   [--overwrite-first N] [--seed 0]

The defaults take about ten minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import json
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

from actlab.store import METRICS, open_store, read_attrs, store_path  # noqa: E402

ARGS = ["--dataset", "synthetic", "--synthetic", "train=200,test=100,classes=4,shape=1x4x4", "--model", "mlp3",
        "--width", "8", "--epochs", "12", "--record-epochs", "every:3", "--checkpoint-every", "2",
        "--probe-clean", "20", "--probe-noisy", "20", "--probe-test", "20", "--no-progress", "--device", "cpu"]
ENSEMBLE = ["--seeds", "0-1"]
OLD = ["--lr", "0.01"]
"""What the recording that ``--overwrite`` replaces was recorded with in addition (the new one has the default lr)."""
SEEDS = (0, 1)


def count_calls(server: crashing_actlab.Server, argv: list[str], root: Path, before: list[str] | None = None) -> Counter:
    """Calls of each kind in one uninterrupted ``actlab argv`` (after ``actlab before``, not counted), by the log."""
    log = root / f"calls{len(list(root.glob('calls*')))}.log"
    if before is not None:
        assert server.run(before).returncode == 0
    job = {"argv": argv, "env": {crashing_actlab.ENV: None, crashing_actlab.LOG_ENV: str(log)}}
    assert server.start(job).wait()[0].returncode == 0
    return Counter(line.split()[0] for line in log.read_text().splitlines())


def replicas(run: Path) -> list[Path]:
    """The run folders of a recording: the run itself, or an ensemble's replicas."""
    marker = run / ".actlab.json"
    ensemble = (run / "seed0").exists() or (marker.is_file() and json.loads(marker.read_text()).get("kind") == "ensemble")
    return [run / f"seed{seed}" for seed in SEEDS] if ensemble else [run]


def same_recording(run: Path, ref: Path) -> bool:
    """Every run of ``run`` (a run, or each replica of an ensemble) equals the one of ``ref`` bit for bit."""
    return all(same_run(mine, theirs) for mine, theirs in zip(replicas(run), replicas(ref), strict=True))


def learning_rates(run: Path) -> list[float | None]:
    """The lr stored by each run of ``run`` (None for a run whose store cannot be read)."""
    found = []
    for folder in replicas(run):
        try:
            found.append(read_attrs(folder)["config"]["lr"])
        except Exception:
            found.append(None)
    return found


def of_its_marker(ensemble: Path) -> bool:
    """Whether every replica's store records the ensemble id its ensemble's marker names (read here from the JSON
    files, not by actlab's reader); False for a replica without a readable store."""
    def read(path: Path) -> dict:
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    marked = read(ensemble / ".actlab.json").get("ensemble_id")
    ids = [read(store_path(folder) / "zarr.json").get("attributes", {}).get("config", {}).get("resolved", {})
           .get("ensemble", {}).get("id") for folder in replicas(ensemble)]
    return ids == [marked] * len(ids)


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
    def __init__(self, server: crashing_actlab.Server, root: Path, references: dict[str, Path], calls: dict[str, Counter],
                 rng: random.Random, overwrite_first: int | None = None) -> None:
        self.server, self.root, self.references, self.calls, self.rng = server, root, references, calls, rng
        self.overwrite_first = overwrite_first
        self.reference = references["run"]
        self.count = 0
        self.problems: list[str] = []
        self.what = ""

    def new_run(self) -> Path:
        self.count += 1
        self.what = ""
        return self.root / f"run{self.count}"

    def injected(self, config: str = "run", kinds: tuple[str, ...] | None = None, first: int | None = None) -> str:
        """A crash spec at a random call of one of ``kinds`` in the recording ``config``, among its ``first`` calls."""
        calls = self.calls[config]
        kind = self.rng.choice([k for k in (kinds or crashing_actlab.KINDS) if calls[k]])
        spec = f"{kind}:{self.rng.randint(1, min(calls[kind], first or calls[kind]))}"
        self.what = f"{self.what} then {spec}" if self.what.startswith("+") else f"{config} {spec}"
        return spec

    def finish(self, run: Path, tally: Counter) -> None:
        """Resume (or record again when no store exists); count what worked."""
        if store_path(run).exists():
            tally["store existed"] += 1
            tally["store opened"] += opens(run)
            result = self.server.run(["record", "--resume", str(run), "--no-progress"])
        else:
            result = self.server.run(["record", *ARGS, "--out", str(run)])
        self.tally_finish(run, self.reference, result, tally, "resume ")

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

    def ensemble_kill(self, tally: Counter) -> None:
        run = self.new_run()
        result = self.server.run(["record", *ARGS, *ENSEMBLE, "--out", str(run)], f"{self.injected('ensemble')}:kill")
        tally["trials"] += 1
        tally["killed"] += result.returncode == -signal.SIGKILL
        if all(store_path(folder).exists() for folder in replicas(run)):
            tally["every replica's store existed"] += 1
            tally["every replica's store opened"] += all(opens(folder) for folder in replicas(run))
            finished = self.server.run(["record", "--resume", str(run), "--no-progress"])
        else:
            finished = self.server.run(["record", *ARGS, *ENSEMBLE, "--out", str(run), "--overwrite"])
        self.tally_finish(run, self.references["ensemble"], finished, tally)

    def overwrite_kill(self, tally: Counter, config: str) -> None:
        """``--overwrite`` of a complete recording (recorded with :data:`OLD`) killed at an injected rename."""
        run = self.new_run()
        extra = ENSEMBLE if config == "ensemble" else []
        shutil.copytree(self.references[f"old {config}"], run, symlinks=True)
        argv = ["record", *ARGS, *extra, "--out", str(run), "--overwrite"]
        result = self.server.run(argv, f"{self.injected(f'overwrite {config}', ('replace',), self.overwrite_first)}:kill")
        tally["trials"] += 1
        tally["killed"] += result.returncode == -signal.SIGKILL
        rates = learning_rates(run)
        old_lr, new_lr = float(OLD[1]), 1e-4
        refused = False
        if config == "ensemble" and not of_its_marker(run):
            tally["replicas not all of the marker's"] += 1
            analyzed = self.server.run(["analyze", str(run), "--no-progress", "--format", "png"])
            lines = [line for line in analyzed.stderr.splitlines() if line.startswith("actlab: error:")]
            refused = (analyzed.returncode == 2 and len(lines) == 1 and "Traceback" not in analyzed.stderr
                       and any(reason in lines[0] for reason in ("mixes replicas of two recordings", "lacks the stores")))
            tally["  analyze refused them in one line"] += refused
            if not refused:
                self.problems.append(f"{self.what}: analyze of replicas not of the marker's recording exited "
                                     f"{analyzed.returncode}: {analyzed.stderr.strip()[-300:]}")
        if rates == [old_lr] * len(rates) and same_recording(run, self.references[f"old {config}"]):
            tally["old recording intact"] += 1
            finished = self.server.run(argv)
        elif rates == [new_lr] * len(rates):
            tally["new recording in place"] += 1
            finished = self.server.run(["record", "--resume", str(run), "--no-progress"])
        elif refused:
            tally["a mix, finished by --resume"] += 1
            finished = self.server.run(["record", "--resume", str(run), "--no-progress"])
        else:
            self.problems.append(f"{self.what}: neither the old nor the new recording whole (lr {rates})")
            finished = self.server.run(argv)
        self.tally_finish(run, self.references[config], finished, tally)

    def tally_finish(self, run: Path, reference: Path, result: crashing_actlab.Result, tally: Counter,
                     label: str = "") -> None:
        """Count whether finishing ``run`` worked, equals ``reference`` and left nothing behind."""
        tally[f"{label}finished"] += result.returncode == 0
        tally[f"{label}bit-identical"] += result.returncode == 0 and same_recording(run, reference)
        if leftovers(run):
            self.problems.append(f"{self.what}: leftovers {found_leftovers(run)}")
        else:
            tally["no leftovers after"] += 1
        if result.returncode != 0:
            self.problems.append(f"{self.what}: finishing exited {result.returncode}: {result.stderr.strip()[-300:]}")

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
    parser.add_argument("--ensemble", type=int, default=8, help="ensembles killed at random injected calls (default: 8)")
    parser.add_argument("--overwrite", type=int, default=8, help="--overwrite of a run killed at a random rename (default: 8)")
    parser.add_argument("--ensemble-overwrite", type=int, default=8,
                        help="--overwrite of an ensemble killed at a random rename (default: 8)")
    parser.add_argument("--overwrite-first", type=int, default=None, metavar="N",
                        help="draw the killed rename of an --overwrite among its first N renames (default: all)")
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
        references = {"run": reference}
        for name, extra in (("ensemble", ENSEMBLE), ("old run", OLD), ("old ensemble", [*OLD, *ENSEMBLE])):
            references[name] = root / name.replace(" ", "-")
            assert server.run(["record", *ARGS, *extra, "--out", str(references[name])]).returncode == 0
        counting = root / "counting"
        counting.mkdir()
        calls = {"run": count_calls(server, ["record", *ARGS, "--out", str(counting / "run")], counting),
                 "ensemble": count_calls(server, ["record", *ARGS, *ENSEMBLE, "--out", str(counting / "ensemble")], counting),
                 "overwrite run": count_calls(server, ["record", *ARGS, "--out", str(counting / "run"), "--overwrite"],
                                              counting, before=["record", *ARGS, *OLD, "--out", str(counting / "run"),
                                                                "--overwrite"]),
                 "overwrite ensemble": count_calls(
                     server, ["record", *ARGS, *ENSEMBLE, "--out", str(counting / "ensemble"), "--overwrite"], counting,
                     before=["record", *ARGS, *OLD, *ENSEMBLE, "--out", str(counting / "ensemble"), "--overwrite"])}
        stress = Stress(server, root, references, calls, rng, overwrite_first=args.overwrite_first)
        tallies: dict[str, Counter] = {}
        for name, count, trial in (("random-time kills", args.random, lambda t: stress.random_kill(t, duration)),
                                   ("kills at injected calls", args.injected, stress.injected_kill),
                                   ("kills twice in a row", args.twice, stress.twice),
                                   ("ENOSPC at injected calls", args.enospc, stress.enospc),
                                   ("ensembles killed at injected calls", args.ensemble, stress.ensemble_kill),
                                   ("--overwrite of a run killed at injected renames", args.overwrite,
                                    lambda t: stress.overwrite_kill(t, "run")),
                                   ("--overwrite of an ensemble killed at injected renames", args.ensemble_overwrite,
                                    lambda t: stress.overwrite_kill(t, "ensemble"))):
            tally = tallies[name] = Counter()
            for _ in range(count):
                trial(tally)
        print(f"stress_crash: seed {args.seed}, one uninterrupted run {duration:.1f} s, "
              + (f"--overwrite killed among its first {args.overwrite_first} renames, " if args.overwrite_first else "")
              + f"total {time.perf_counter() - t0:.0f} s")
        for config, counted in calls.items():
            print(f"calls in one uninterrupted recording ({config}): "
                  + ", ".join(f"{kind} {counted[kind]}" for kind in crashing_actlab.KINDS))
        for name, tally in tallies.items():
            print(table(name, tally))
        for problem in stress.problems:
            print("problem:", problem)
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
