"""Time and size of the code of README.md and docs/*.md: the Python snippets that record or analyse, and every bash command.

Every fenced ``python`` block of README.md and docs/analysis.md that calls ``actlab.record(`` or opens
``runs/quickstart`` runs in a fresh interpreter (one torch thread, ``OMP_NUM_THREADS=1``) in an empty temporary folder
(for the latter, after README command 1's ``actlab record``, untimed); the script prints its wall time and the size of
what it wrote.

With ``--bash``, every command line of a fenced ``bash`` block of README.md and docs/*.md (comments, and lines that
only export a variable, left out) gets one line ``$ COMMAND  =>  FIGURE  (SOURCE)``. FIGURE is what the page states
beside the command (tests/test_snippets.py checks that it does, that every command has a line, and that each quoted
file holds its quotes); SOURCE says where it comes from:

- ``run as written``: run in an empty folder that holds ``examples/`` and sees ``../shared/data``, ACTLAB_DATA set;
- ``extrapolated``: a study-scale ``actlab record``, run as written with ``--epochs 3`` appended; its time and the
  size of ``runs/`` extrapolated to the command's epochs (:func:`extrapolated`);
- a committed file and the words of it that give the figure;
- a test that runs the command's case, or CI (``.ci/run`` runs the command as written);
- ``not measured``, and why.

With ``--time 'COMMAND' FILE``, one command (a benchmark whose output gives only its parts' times) runs as written
in a working folder of its own that sees the clone's folders (``actlab``, ``benchmarks``, ``examples``, ``runs``,
``tests``) through links, with ``TMPDIR`` inside it; FILE gets the command line, the command's output, and its wall time
and the most it held on disk (the peak size of that folder, links not followed, sampled every second). With
``--timed-lines``, the ``--bash`` line of each such file (``docs/benchmarks/*_timed.txt``, and the
``*_extrapolated.txt`` below); ``--bash`` uses them too.

With ``--extrapolate 'COMMAND' FILE``, a shell script of ``actlab`` commands (:data:`SCRIPTS`) runs in a clone-like
folder with every ``actlab record`` cut to 3 epochs (through ``$ACTLAB``, which the scripts call); each record is
extrapolated to its epochs as above and the other calls (``analyze``, ``compare``) count as timed on the short runs
(:func:`script_extrapolated`); or a command that reads such a script's runs (:data:`AFTER`) runs as written on the
3-epoch runs (:func:`after_short_runs`). FILE (``docs/benchmarks/*_extrapolated.txt``) gets the command line, one line
per call and a ``total:`` line, which gives the command's ``--bash`` line.

The pages state these numbers beside each snippet and command. Nothing is asserted.

    python benchmarks/bench_snippets.py                     # one line per Python snippet
    python benchmarks/bench_snippets.py runs/quickstart     # only the Python snippets that hold this text
    python benchmarks/bench_snippets.py --bash              # one line per bash command
    python benchmarks/bench_snippets.py --time 'python benchmarks/bench_remote.py' docs/benchmarks/bench_remote_timed.txt
    python benchmarks/bench_snippets.py --extrapolate 'ACTLAB_DATA=../shared/data bash examples/dd_search.sh' docs/benchmarks/dd_search_extrapolated.txt
    python benchmarks/bench_snippets.py --timed-lines       # the --bash lines of docs/benchmarks/*_timed.txt and *_extrapolated.txt
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def snippets(readme: Path) -> list[str]:
    """The fenced python blocks of ``readme`` that record a run."""
    blocks = re.findall(r"^```python\n(.*?)^```", readme.read_text(), flags=re.S | re.M)
    return [block for block in blocks if "actlab.record(" in block or '"runs/quickstart"' in block]


def quickstart_record(readme: Path) -> str:
    """README command 1's ``actlab record`` (the line after ``# 1.``, from ``OMP_NUM_THREADS=1 actlab record``)."""
    command = readme.read_text().split("\n# 1.", 1)[1].splitlines()[1]
    return command[command.index("OMP_NUM_THREADS=1 actlab record"):].split(" && ")[0]


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder``, links not followed (``du -sb --apparent-size`` without the folders); a
    file removed while the folder is walked (a command still running) is left out."""
    total = 0
    for root, _, files in os.walk(folder):  # os.walk does not follow links to folders
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # removed between the listing and the stat
                continue
            total += 0 if stat.S_ISLNK(info.st_mode) else info.st_size
    return total


COMMAND_1 = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[record]' && OMP_NUM_THREADS=1 actlab record "
             "--dataset digits --model mlp7 --width 256 --lr 1e-3 --epochs 100 --record-epochs log:16 --probe-clean 400 "
             "--probe-noisy 400 --probe-test 300 --dtype float16 --out runs/quickstart && actlab analyze runs/quickstart")
COMMAND_2 = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[record,lightning,test]' && "
             "ACTLAB_DATA=../shared/data python -m pytest -q -n 2")

RUN = {"actlab record --help"}  # run as written
STUDY = [  # actlab record at study scale: hours on a CPU, extrapolated from three epochs
    "actlab record --model mlp7",
    "actlab record --model mlp5 --data-dir ../shared/data",
    "actlab record --model mlp7 --train-size 10000 --epochs 300 --record-epochs log:40",
    "actlab record --config examples/record_config.toml --lr 3e-4",
    "actlab record --model mlp7 --seeds 0-4",
]
CITED = {  # command: (figure, committed file, the words of it that give the figure)
    COMMAND_1: ("143 s, 90 MB", "docs/benchmarks/quickstart.txt", ["total 143.2 s", "runs/quickstart: 90M"]),
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[record]'":
        ("569 s, a 6.0 GB venv", "docs/benchmarks/install_sizes.txt", ["pip install -e '.[record]': 569.3 s, venv 6021 MB"]),
    "actlab analyze runs/mlp7": ("7.5 to 8.1 s for a 3.1 GB store", "docs/benchmarks/bench_analyze.txt",
                                 ["3.14 GB raw float32", "full analysis 7.5 s", "full analysis 8.1 s"]),
    "actlab analyze runs/mlp7 --scheduler local:2": ("13 s for a 3.1 GB store", "docs/benchmarks/bench_distributed.txt",
                                                    ["3.144 GB", "LocalCluster 2 processes x 1 thread: 12.54 s"]),
    "actlab analyze s3://bucket/runs/mlp7": ("3.5 s for a 62 MB store on a local S3 server", "docs/benchmarks/bench_remote.txt",
                                             ["62 MB raw float32", "open + analyze           local disk   0.75 s | local S3 server   3.47 s"]),
    "bash benchmarks/bench_quickstart.sh": ("143 s, 90 MB", "docs/benchmarks/quickstart.txt", ["total 143.2 s", "runs/quickstart: 90M"]),
    "python benchmarks/bench_record.py": ("49 s, 0.4 GB", "docs/benchmarks/bench_record.txt",
                                          ["real\t0m48.948s", "store size on disk 405.9 MB"]),
    "python benchmarks/bench_analyze.py": ("62 s, 3.1 GB", "docs/benchmarks/bench_analyze.txt",
                                           ["build: 27.6 s", "3.14 GB raw float32", "plain read 3.7 s", "full analysis 7.5 s",
                                            "plain read 3.6 s", "full analysis 8.1 s", "plain read 3.8 s", "full analysis 8.0 s"]),
    "ACTLAB_DATA=../shared/data bash examples/reproduce_seeds.sh": (
        "2.4 h of training", "docs/reproduction.md", ["MLP7 2,975 s, MLP5 2,922 s, MLP3 2,823 s"]),
    "bash examples/reproduce_seeds.sh": ("2.4 h of training", "docs/reproduction.md", ["MLP7 2,975 s, MLP5 2,922 s, MLP3 2,823 s"]),
    "ACTLAB_DATA=/data bash examples/reproduce_gpu.sh": ("MLP7 227 s on one H200", "docs/reproduction/gpu/README.md",
                                                         ["| MLP7 | 1000 (complete) | 227 s |"]),
}
TESTED = {  # command: the test that runs its case, or CI
    COMMAND_2: ".ci/run",
    "actlab record --resume runs/mlp7": "tests/test_cli_record.py::test_kill_9_then_resume_matches_uninterrupted_run",
    "actlab record --model mlp7 --out s3://bucket/runs/mlp7": "tests/test_remote.py::test_cli_record_to_url_equals_the_python_api_run",
    "actlab compare runs/mlp7 runs/mlp5 runs/mlp3": "tests/test_cli_analyze.py::test_compare_reuses_saved_analyses_and_computes_the_others",
    "actlab compare runs/mlp7 runs/mlp5 --extra memorisation":
        "tests/test_analysis_memorisation.py::test_compare_tables_give_each_runs_own_joined_analysis",
    "actlab analyze runs/mlp7 --scheduler tcp://host:8786": "tests/test_distributed.py::test_analyze_and_compare_on_worker_processes_equal_threads",
}
NOT_MEASURED: dict[str, str] = {}  # command: why not (one with a docs/benchmarks/*_timed.txt takes its line from that file)


LINKED = ("actlab", "benchmarks", "examples", "runs", "tests")  # what a --time command sees of the clone, as links
TIMED_GLOB = "docs/benchmarks/*_timed.txt"
TIMED_HEADER = re.compile(r"^# python benchmarks/bench_snippets\.py --time (.+) (\S+_timed\.txt)  \(", re.M)
TIMED_FOOTER = re.compile(r"^(wall time (\d+\.\d) s); (held at most (\d+\.\d) MB) .*; exit 0$", re.M)


def time_command(command: str, out: Path, env: dict[str, str], every: float = 1.0) -> tuple[float, int, int]:
    """Run ``command`` (bash) in a working folder of its own; write FILE ``out``; return (seconds, peak bytes, exit code).

    The folder links :data:`LINKED` of the clone and holds ``TMPDIR``; the peak is the largest size of the folder
    (links not followed) among samples taken every ``every`` seconds and one at the end, before the folder is removed.
    """
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempfile.TemporaryDirectory(prefix="actlab-timed-") as parent:
        folder = Path(parent)
        for name in LINKED:
            if (ROOT / name).exists():
                (folder / name).symlink_to(ROOT / name)
        (folder / "tmp").mkdir()
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(every):
                peak[0] = max(peak[0], folder_size(folder))

        sampler = threading.Thread(target=sample, daemon=True)
        start = time.perf_counter()
        sampler.start()
        finished = subprocess.run(["bash", "-c", command], cwd=folder, env={**env, "TMPDIR": str(folder / "tmp")},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        peak[0] = max(peak[0], folder_size(folder))
    out.write_text(
        f"# python benchmarks/bench_snippets.py --time {shlex.quote(command)} {out.as_posix()}  (run "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, load average at start {loadavg}; {os.cpu_count()} cores)\n"
        f"{finished.stdout}"
        f"# load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}\n"
        f"wall time {seconds:.1f} s; held at most {peak[0] / 1e6:.1f} MB (peak size of its working folder and TMPDIR, "
        f"sampled every {every:g} s); exit {finished.returncode}\n")
    return seconds, peak[0], finished.returncode


def size_words(megabytes: float) -> str:
    """``62.1 MB``, or ``3.0 GB`` from 1,000 MB on."""
    return f"{megabytes:.1f} MB" if megabytes < 1000 else f"{megabytes / 1000:.1f} GB"


def timed_lines(root: Path = ROOT) -> dict[str, str]:
    """command: its ``--bash`` line (``FIGURE  (FILE: QUOTES)``), for each ``*_timed.txt`` whose command exited 0."""
    lines = {}
    for path in sorted(root.glob(TIMED_GLOB)):
        text = path.read_text()
        header, footer = TIMED_HEADER.search(text), TIMED_FOOTER.search(text)
        if header is None or footer is None:  # not written by --time, or the command failed: no figure from it
            continue
        command = shlex.split(header.group(1))[0]
        figure = f"{float(footer.group(2)):.1f} s, {size_words(float(footer.group(4)))}"
        lines[command] = f"{figure}  ({path.relative_to(root).as_posix()}: {footer.group(1)}; {footer.group(3)})"
    return lines


def bash_commands(page: Path) -> list[str]:
    """The command lines of the fenced bash blocks of ``page``, comments dropped, lines that only export left out."""
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(shlex.split(line, comments=True))
            if command and not command.startswith("export "):
                lines.append(line.split(" #", 1)[0].strip())
    return lines


def measured(command: str, folder: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds of ``command`` run in ``folder``, and the bytes it left in ``folder/runs``."""
    start = time.perf_counter()
    subprocess.run(["bash", "-c", command], cwd=folder, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    return seconds, folder_size(folder / "runs") if (folder / "runs").exists() else 0


def clone_like(parent: Path, data: str) -> Path:
    """``parent/clone`` holding ``examples/``, beside ``parent/shared/data`` (a link to the data): a clone's layout."""
    shutil.copytree(ROOT / "examples", parent / "clone" / "examples")
    (parent / "shared").mkdir()
    (parent / "shared" / "data").symlink_to(Path(data).resolve())
    return parent / "clone"


def _extrapolation(config, seconds: float, size: int, stores: list[Path], short: int) -> tuple[float, float, str]:
    """(seconds, bytes, words) of a run of ``config`` from its ``short``-epoch run: ``seconds`` and ``size`` (bytes of
    what it wrote) measured, ``stores`` its ``store.zarr`` folders (one per seed of an ensemble); see :func:`extrapolated`."""
    from actlab.analysis import open_run
    from actlab.record.config import parse_schedule

    wall = open_run(stores[0].parent).metrics["wall_time"].values
    per_epoch_seconds = float(np.median(np.diff(wall)))
    grown = {part: sum(folder_size(store / part) for store in stores) for part in ("layers", "parameters", "dynamics")}
    recorded, full = len(parse_schedule(config.record_epochs, short)), len(parse_schedule(config.record_epochs, config.epochs))
    per_recorded = (grown["layers"] + grown["parameters"]) / recorded
    per_epoch_bytes = grown["dynamics"] / len(wall)
    total_seconds = seconds + (config.epochs - short) * per_epoch_seconds
    total_size = size - sum(grown.values()) + full * per_recorded + (config.epochs + 1) * per_epoch_bytes
    words = (f"extrapolated from {short} epochs in {seconds:.0f} s, {size / 1e6:.0f} MB: {config.epochs - short} more "
             f"epochs of {per_epoch_seconds:.1f} s (median), {full} recorded epochs of {per_recorded / 1e6:.1f} MB, "
             f"per-sample dynamics {per_epoch_bytes / 1e6:.2f} MB per epoch")
    return total_seconds, total_size, words


def extrapolated(command: str, env: dict[str, str], actlab: str, short: int = 3) -> str:
    """Time and size of a study-scale ``actlab record``, from a run of its first ``short`` epochs.

    Time: that run's wall time plus the remaining epochs at the median duration of its epochs (the differences of the
    stored ``wall_time``, every epoch recorded). Size: what does not grow with the epochs, plus the recorded epochs at
    the bytes per recorded epoch of ``layers/`` and ``parameters/``, plus every epoch at the bytes per epoch of
    ``dynamics/``.
    """
    from actlab.cli import build_parser
    from actlab.cli.record import config_from_args

    os.chdir(ROOT)  # --config paths are relative to the clone
    config = config_from_args(build_parser().parse_args(shlex.split(command)[1:]))
    with tempfile.TemporaryDirectory(prefix="actlab-snippet-") as parent:
        folder = clone_like(Path(parent), env["ACTLAB_DATA"])
        seconds, size = measured(command.replace("actlab", actlab, 1) + f" --epochs {short}", folder, env)
        total_seconds, total_size, words = _extrapolation(
            config, seconds, size, sorted((folder / "runs").rglob("store.zarr")), short)
    return f"{total_seconds / 60:.0f} min, {total_size / 1e9:.1f} GB  ({words})"


# -- shell scripts of actlab commands ------------------------------------------------------------------------------

SHORT_ACTLAB = """#!{python}
# actlab for bench_snippets.py --extrapolate: runs the real one ({real}), `record` with --epochs {short} appended (the
# last --epochs wins), and appends one JSON line per call to $ACTLAB_CALLS: argv, wall seconds, exit code.
import json, os, shlex, subprocess, sys, time
argv = sys.argv[1:]
start = time.perf_counter()
code = subprocess.run([*shlex.split({real!r}), *argv, *(["--epochs", "{short}"] if argv[:1] == ["record"] else [])]).returncode
with open(os.environ["ACTLAB_CALLS"], "a") as calls:
    calls.write(json.dumps({{"argv": argv, "seconds": time.perf_counter() - start, "exit": code}}) + "\\n")
sys.exit(code)
"""
SCRIPTS = {  # a shell script of actlab commands: run through SHORT_ACTLAB, each record extrapolated
    "ACTLAB_DATA=../shared/data bash examples/reproduce_cpu.sh",
    "ACTLAB_DATA=../shared/data bash examples/dd_search.sh",
}
AFTER = {  # command: the script whose short runs it reads (run first, untimed, through SHORT_ACTLAB); run as written
    "bash examples/collect_reproduction.sh": "ACTLAB_DATA=../shared/data bash examples/reproduce_seeds.sh",
    "python benchmarks/bench_denormal.py runs/dd-search/lr1e-3": "ACTLAB_DATA=../shared/data bash examples/dd_search.sh lr1e-3",
}
EDITS = {  # command: (file of the clone-like folder, text, its replacement) made before AFTER's script runs
    # docs/reproduction/render.py refuses metrics that end before the epochs reproduce_seeds.sh states
    "bash examples/collect_reproduction.sh": ("examples/reproduce_seeds.sh", "EPOCHS=${EPOCHS:-150}", "EPOCHS=${EPOCHS:-{short}}"),
}
COPIED = ("docs/reproduction/render.py", "docs/reproduction/reproduction.md.j2", "docs/reproduction/gpu")
"""Besides ``examples/``: what the commands read of the clone (collect_reproduction.sh renders docs/reproduction.md
with them; the collected ``docs/reproduction/seeds/`` starts empty)."""
EXTRAPOLATED_GLOB = "docs/benchmarks/*_extrapolated.txt"
EXTRAPOLATED_HEADER = re.compile(r"^# python benchmarks/bench_snippets\.py --extrapolate (.+) (\S+_extrapolated\.txt)  \(", re.M)
EXTRAPOLATED_FOOTER = re.compile(r"^total: (.+?) \((.+)\)$", re.M)


def duration_words(seconds: float) -> str:
    """``48 s``, ``35 min``, or ``9.2 h`` from two hours on."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def short_calls(command: str, folder: Path, env: dict[str, str], real: str, short: int) -> tuple[float, list[dict]]:
    """Run ``command`` (bash) in ``folder`` with ``$ACTLAB`` a wrapper of ``real`` that cuts ``record`` to ``short``
    epochs; return its wall seconds and the wrapper's calls (``argv``, ``seconds``, ``exit``) in order."""
    wrapper, calls = folder / ".short-actlab", folder / ".short-actlab-calls.jsonl"
    wrapper.write_text(SHORT_ACTLAB.format(python=sys.executable, real=real, short=short))
    wrapper.chmod(0o755)
    start = time.perf_counter()
    done = subprocess.run(["bash", "-c", command], cwd=folder, env={**env, "ACTLAB": str(wrapper), "ACTLAB_CALLS": str(calls)},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command!r} exited {done.returncode}: {done.stdout.strip()[-2000:]}")
    return seconds, [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def script_extrapolated(command: str, folder: Path, env: dict[str, str], real: str,
                        short: int = 3) -> tuple[list[str], float, float]:
    """Time and size of a shell script of ``actlab`` commands, from a run of it with every ``record`` cut to ``short``
    epochs (``$ACTLAB``, which the scripts call, replaced by :data:`SHORT_ACTLAB`); the lines of its output, and the
    total seconds and bytes.

    Each ``record`` is extrapolated to its own epochs (:func:`_extrapolation`, its size the bytes under its ``--out``
    on the run's disk); each other call (``analyze``, ``compare``) counts as timed on the short runs, and what is
    under ``runs/`` outside the records' stores (analyses, checkpoints) at its size after the short run. The last line,
    ``total: TIME, SIZE (...)``, gives the sums; the script's own wall time is the short run's.
    """
    from actlab.cli import build_parser
    from actlab.cli.record import config_from_args

    seconds, calls = short_calls(command, folder, env, real, short)
    lines, total_seconds, total_size, others, stores_size, n_records = [], 0.0, 0.0, 0.0, 0, 0
    here = Path.cwd()
    os.chdir(folder)  # --out paths are relative to the script's folder
    try:
        for call in calls:
            argv = call["argv"]
            if argv[:1] != ["record"]:
                others += call["seconds"]
                lines.append(f"actlab {shlex.join(argv)}: {call['seconds']:.1f} s on the short runs (exit {call['exit']})")
                continue
            config = config_from_args(build_parser().parse_args(argv))
            out = folder / config.out
            stores = sorted(out.rglob("store.zarr"))
            size = sum(folder_size(store) for store in stores)
            run_seconds, run_size, words = _extrapolation(config, call["seconds"], size, stores, short)
            total_seconds, total_size, stores_size, n_records = (total_seconds + run_seconds, total_size + run_size,
                                                                 stores_size + size, n_records + 1)
            lines.append(f"actlab {shlex.join(argv)}: {duration_words(run_seconds)}, {size_words(run_size / 1e6)} "
                         f"({words}; exit {call['exit']})")
    finally:
        os.chdir(here)
    rest = folder_size(folder / "runs") - stores_size if (folder / "runs").exists() else 0
    lines.append(f"the script with every record cut to {short} epochs: wall time {seconds:.1f} s, {len(calls)} actlab calls")
    lines.append(f"total: {duration_words(total_seconds + others)}, {size_words((total_size + rest) / 1e6)} ({n_records} "
                 f"records extrapolated: {duration_words(total_seconds)}, {size_words(total_size / 1e6)}; the other "
                 f"{len(calls) - n_records} calls as timed on the short runs: {others:.0f} s; the rest of runs/ "
                 f"(analyses, checkpoints) at the short runs' size: {size_words(rest / 1e6)})")
    return lines, total_seconds + others, total_size + rest


def after_short_runs(command: str, folder: Path, env: dict[str, str], real: str,
                     short: int = 3) -> tuple[list[str], float, float]:
    """Run :data:`AFTER`'s script of ``command`` with every record cut to ``short`` epochs (untimed; after the edit of
    :data:`EDITS` where it has one), then ``command``
    as written on what it left; the lines of its output, the last ``total: TIME, SIZE (...)``, and the command's wall
    seconds and the bytes it added to ``folder`` (its stdout and stderr kept in memory, not counted)."""
    setup, edited = AFTER[command], []
    if command in EDITS:
        path, text, replacement = EDITS[command]
        replacement = replacement.replace("{short}", str(short))
        source = (folder / path).read_text()
        if text not in source:
            raise RuntimeError(f"{path} does not hold {text!r}; update EDITS in benchmarks/bench_snippets.py")
        (folder / path).write_text(source.replace(text, replacement))
        edited = [f"edited first: {path}: {text} -> {replacement}"]
    setup_seconds, calls = short_calls(setup, folder, env, real, short)
    before = folder_size(folder)
    start = time.perf_counter()
    done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    seconds = time.perf_counter() - start
    added = folder_size(folder) - before
    return [*edited, f"first, untimed: {setup} with every record cut to {short} epochs ({len(calls)} actlab calls, "
            f"{setup_seconds:.1f} s)", f"$ {command}", *done.stdout.splitlines(),
            f"total: {seconds:.1f} s, {size_words(added / 1e6)} (run as written on the {short}-epoch runs of {setup}; "
            f"wall time {seconds:.1f} s; wrote {added / 1e6:.1f} MB; exit {done.returncode})"], seconds, added


def extrapolate_command(command: str, out: Path, env: dict[str, str], short: int = 3) -> int:
    """``--extrapolate``: :func:`script_extrapolated` or :func:`after_short_runs` of ``command`` in a clone-like
    folder; write FILE ``out`` (the command line, the load average, the lines); return 0, or 1 if it failed."""
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    real = f"{sys.executable} -m actlab.cli"
    with tempfile.TemporaryDirectory(prefix="actlab-snippet-") as parent:
        folder = clone_like(Path(parent), env["ACTLAB_DATA"])
        for path in COPIED:
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (ROOT / path).is_dir() else shutil.copy)(ROOT / path, folder / path)
        (folder / "benchmarks").symlink_to(ROOT / "benchmarks")
        try:
            lines = (script_extrapolated if command in SCRIPTS else after_short_runs)(command, folder, env, real, short)[0]
            code = 0 if lines[-1].endswith("exit 0)") or command in SCRIPTS else 1
        except (RuntimeError, subprocess.CalledProcessError) as error:
            lines, code = [f"failed: {error}"], 1
    out.write_text(
        f"# python benchmarks/bench_snippets.py --extrapolate {shlex.quote(command)} {out.as_posix()}  (run "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, load average at start {loadavg}; {os.cpu_count()} cores; "
        f"OMP_NUM_THREADS=1)\n" + "\n".join(lines) +
        f"\n# load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}\n")
    return code


def extrapolated_lines(root: Path = ROOT) -> dict[str, str]:
    """command: its ``--bash`` line (``FIGURE  (FILE: total: ...)``), for each ``*_extrapolated.txt`` with a total."""
    lines = {}
    for path in sorted(root.glob(EXTRAPOLATED_GLOB)):
        text = path.read_text()
        header, footer = EXTRAPOLATED_HEADER.search(text), EXTRAPOLATED_FOOTER.search(text)
        command = shlex.split(header.group(1))[0] if header else ""
        if footer is None or not command or (command not in SCRIPTS and not footer.group(2).endswith("exit 0")):
            continue  # not written by --extrapolate, or the command failed: no figure from it
        lines[command] = f"{footer.group(1)}  ({path.relative_to(root).as_posix()}: {footer.group(0)})"
    return lines


def bash_lines(env: dict[str, str]) -> None:
    """One line per bash command of README.md and docs/*.md: its figure and where it comes from."""
    actlab = f"{sys.executable} -m actlab.cli"
    timed = {**timed_lines(), **extrapolated_lines()}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for command in bash_commands(page):
            if command in RUN:
                with tempfile.TemporaryDirectory(prefix="actlab-snippet-") as parent:
                    seconds, size = measured(command.replace("actlab", actlab, 1), clone_like(Path(parent), env["ACTLAB_DATA"]), env)
                line = f"{seconds:.1f} s, {size / 1e6:.0f} MB  (run as written)"
            elif command in STUDY:
                line = extrapolated(command, env, actlab)
            elif command in timed:
                line = timed[command]
            elif command in CITED:
                figure, path, quotes = CITED[command]
                line = f"{figure}  ({path}: {'; '.join(quotes)})"
            elif command in TESTED:
                line = f"run by a test  ({TESTED[command]})"
            else:
                line = f"not measured  ({NOT_MEASURED.get(command, 'not in benchmarks/bench_snippets.py')})"
            print(f"$ {command}  =>  {line}", flush=True)


def main() -> None:
    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; {os.cpu_count()} cores")
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])  # the clone first
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "MPLBACKEND": "Agg"}
    if sys.argv[1:2] == ["--time"]:
        if len(sys.argv) != 4 or not sys.argv[3].endswith("_timed.txt"):
            print("bench_snippets.py: error: --time takes a command and a file named *_timed.txt; see the docstring",
                  file=sys.stderr)
            sys.exit(2)
        seconds, peak, code = time_command(sys.argv[2], Path(sys.argv[3]), env)
        print(f"{sys.argv[2]}: wall time {seconds:.1f} s; held at most {peak / 1e6:.1f} MB; exit {code} ({sys.argv[3]})")
        sys.exit(code)
    if sys.argv[1:2] == ["--extrapolate"]:
        known = SCRIPTS | set(AFTER)
        if len(sys.argv) != 4 or not sys.argv[3].endswith("_extrapolated.txt") or sys.argv[2] not in known:
            print(f"bench_snippets.py: error: --extrapolate takes one of {sorted(known)} and a file named "
                  "*_extrapolated.txt; see the docstring", file=sys.stderr)
            sys.exit(2)
        code = extrapolate_command(sys.argv[2], Path(sys.argv[3]),
                                   {**env, "ACTLAB_DATA": os.environ.get("ACTLAB_DATA", str(ROOT.parent / "shared" / "data"))})
        print(Path(sys.argv[3]).read_text(), end="")
        sys.exit(code)
    if sys.argv[1:] == ["--timed-lines"]:
        for command, line in {**timed_lines(), **extrapolated_lines()}.items():
            print(f"$ {command}  =>  {line}")
        return
    if sys.argv[1:] == ["--bash"]:
        bash_lines({**env, "ACTLAB_DATA": os.environ.get("ACTLAB_DATA", str(ROOT.parent / "shared" / "data"))})
        print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        return
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    blocks = snippets(ROOT / "README.md") + snippets(ROOT / "docs" / "analysis.md")
    for block in (block for block in blocks if only in block):
        with tempfile.TemporaryDirectory(prefix="actlab-snippet-") as folder:
            if '"runs/quickstart"' in block:
                actlab = f"{sys.executable} -m actlab.cli record"
                command = quickstart_record(ROOT / "README.md").replace("actlab record", actlab, 1)
                subprocess.run(["bash", "-c", command], cwd=folder, env=env, check=True, capture_output=True)
            before = folder_size(Path(folder))
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", block], cwd=folder, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            outputs = sorted(str(p.relative_to(folder)) for p in (Path(folder) / "runs").iterdir()) if done.returncode == 0 else []
            first = next(line for line in block.splitlines() if "actlab.record(" in line or "open_run(" in line).strip()
            status = "exit 0" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1]}"
            print(f"{first[:70]}...: {seconds:.1f} s, wrote {(folder_size(Path(folder)) - before) / 1e6:.1f} MB, runs: {', '.join(outputs)} ({status})")
    print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
