"""Every ``actlab`` command in the fenced blocks of README.md and docs/*.md parses with actlab's own parser, and a
``record`` command's settings validate, as written; every Python block of README.md compiles. Every bash command of
those pages has its line in docs/benchmarks/snippets.txt (written by ``benchmarks/bench_snippets.py --bash``), and the
page states that line's time and size beside the command, or the line names the test that runs it."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from actlab.cli import build_parser
from actlab.cli.record import config_from_args
from conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SNIPPETS = REPO_ROOT / "docs" / "benchmarks" / "snippets.txt"


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _commands() -> list[tuple[str, str]]:
    """(where, command) for every ``actlab ...`` command of a bash block, env assignments and comments dropped."""
    found = []
    for path in DOCS:
        for block in _blocks(path, "bash"):
            for line in block.replace("\\\n", " ").splitlines():  # a line continuation joins its lines
                words: list[str] = []
                for word in [*shlex.split(line, comments=True), "&&"]:
                    if word != "&&":
                        words.append(word)
                        continue
                    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                        words = words[1:]
                    if words[:1] == ["actlab"]:
                        found.append((path.name, shlex.join(words)))
                    words = []
    return found


COMMANDS = _commands()


def test_the_docs_hold_actlab_commands():
    assert len(COMMANDS) >= 15 and any("--dataset digits --model mlp7" in command for _, command in COMMANDS)


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_command_parses_as_written(where, command, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)  # paths such as examples/record_config.toml are relative to the clone
    argv = shlex.split(command)[1:]
    if "--help" in argv:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
        assert info.value.code == 0
        return
    args = build_parser().parse_args(argv)  # a usage error exits 2 here
    if args.command == "record" and not getattr(args, "resume", None):
        config_from_args(args)  # a bad setting raises ConfigError here


def test_readme_python_blocks_compile():
    blocks = _blocks(REPO_ROOT / "README.md", "python")
    assert len(blocks) >= 3
    for block in blocks:
        compile(block, "README.md", "exec")


def _bash_lines() -> list[tuple[str, str, str]]:
    """(page, command, what the page says beside it: its comment and the comment lines right above) per command line
    of a bash block; lines that only export a variable are not commands."""
    found = []
    for path in DOCS:
        for block in _blocks(path, "bash"):
            above: list[str] = []
            for line in block.replace("\\\n", " ").splitlines():
                if line.startswith("#"):
                    above.append(line)
                    continue
                command, _, comment = line.partition(" #")
                if command.strip() and not command.startswith("export "):
                    found.append((path.name, command.strip(), " ".join([*above, comment])))
                above = []
    return found


def _figures() -> dict[str, tuple[str, str]]:
    """command: (figure, source) of each ``$ COMMAND  =>  FIGURE  (SOURCE)`` line of docs/benchmarks/snippets.txt."""
    lines = re.findall(r"^\$ (.+?)  =>  (.+?)  \((.*)\)$", SNIPPETS.read_text(), flags=re.M)
    return {command: (figure, source) for command, figure, source in lines}


BASH = _bash_lines()


def test_every_bash_command_has_its_time_and_size_beside_it_or_a_test():
    figures = _figures()
    assert len(BASH) >= 30 and "actlab record --help" in figures
    for page, command, beside in BASH:
        assert command in figures, f"{page}: {command!r} has no line in {SNIPPETS.name} (benchmarks/bench_snippets.py --bash)"
        figure, source = figures[command]
        if figure == "run by a test":
            path, _, name = source.partition("::")
            text = (REPO_ROOT / path).read_text()
            assert (f"def {name}(" in text) if name else (command in text), (command, source)
        elif figure != "not measured":
            assert figure in beside, f"{page}: {command!r} should say {figure!r} beside it"


def test_the_quoted_figures_are_in_their_files():
    """A figure taken from a committed file names the file and the words of it that give the figure."""
    quoted = [source for figure, source in _figures().values() if re.match(r"[\w/.-]+\.(txt|md): ", source)]
    assert len(quoted) >= 8
    for source in quoted:
        path, _, quotes = source.partition(": ")
        text = (REPO_ROOT / path).read_text()
        for quote in quotes.split("; "):
            assert quote in text, (path, quote)


def _bench_snippets():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_snippets", REPO_ROOT / "benchmarks" / "bench_snippets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_timed_output_has_its_line_in_snippets_txt():
    """Each docs/benchmarks/*_timed.txt (``bench_snippets.py --time``) and *_extrapolated.txt (``--extrapolate``)
    gives its command's line of snippets.txt, and that command is not also listed as not measured."""
    bench = _bench_snippets()
    timed, extrapolated = bench.timed_lines(), bench.extrapolated_lines()
    assert timed, "no docs/benchmarks/*_timed.txt"
    assert set(extrapolated) == bench.SCRIPTS | set(bench.AFTER), "a command of SCRIPTS or AFTER has no *_extrapolated.txt"
    timed.update(extrapolated)
    text = SNIPPETS.read_text()
    for command, line in timed.items():
        assert f"$ {command}  =>  {line}\n" in text, f"snippets.txt lacks the line of {command!r}: {line}"
        assert command not in bench.NOT_MEASURED, command


def test_the_not_measured_lines_are_what_bench_snippets_writes():
    """snippets.txt's ``not measured`` lines give the reasons of bench_snippets.py's NOT_MEASURED, so that
    ``--bash`` writes them again (a hand-written line would drift from the script)."""
    bench = _bench_snippets()
    not_measured = {command: source for command, (figure, source) in _figures().items() if figure == "not measured"}
    assert not_measured == bench.NOT_MEASURED


def test_time_command_gives_wall_time_and_the_most_held_on_disk(tmp_path):
    """A planted command holds 2,500,000 bytes in TMPDIR for a second, removes them, then leaves 1,000,000 bytes in
    its working folder: the peak is 2,500,000 (sampled every 0.1 s), the wall time at least the second slept and at
    most the time around the call, and the file's line carries both; a failed command gives no line."""
    import time

    bench = _bench_snippets()
    code = ("import os, tempfile, time; path = os.path.join(tempfile.gettempdir(), 'big'); "
            "open(path, 'wb').write(bytes(2_500_000)); time.sleep(1.0); os.remove(path); "
            "open('kept', 'wb').write(bytes(1_000_000)); print('done')")
    command = f'{sys.executable} -c "{code}" && test -L benchmarks'
    out = tmp_path / "docs" / "benchmarks" / "planted_timed.txt"
    out.parent.mkdir(parents=True)
    start = time.perf_counter()
    seconds, peak, code_ = bench.time_command(command, out, {**os.environ}, every=0.1)
    around = time.perf_counter() - start
    assert code_ == 0 and peak == 2_500_000 and 1.0 <= seconds <= around
    text = out.read_text()
    assert text.startswith(f"# python benchmarks/bench_snippets.py --time {shlex.quote(command)} {out.as_posix()}  (run ")
    assert "\ndone\n" in text and text.endswith(f"wall time {seconds:.1f} s; held at most 2.5 MB (peak size of its "
                                               "working folder and TMPDIR, sampled every 0.1 s); exit 0\n")
    assert bench.timed_lines(tmp_path) == {command: f"{seconds:.1f} s, 2.5 MB  (docs/benchmarks/planted_timed.txt: "
                                                    f"wall time {seconds:.1f} s; held at most 2.5 MB)"}
    assert bench.size_words(2980.4) == "3.0 GB" and bench.size_words(62.14) == "62.1 MB"

    seconds, peak, code_ = bench.time_command("exit 3", out, {**os.environ}, every=0.1)
    assert code_ == 3 and peak == 0 and bench.timed_lines(tmp_path) == {}


PLANTED_SCRIPT = """set -euo pipefail
ACTLAB=${ACTLAB:-actlab}
$ACTLAB record --dataset synthetic --synthetic train=200,test=60,classes=4,shape=2x4x4,seed=1 --model mlp3 --width 16 \\
  --epochs 20 --record-epochs every:1 --probe-clean 40 --probe-noisy 20 --probe-test 30 --checkpoint-every 0 \\
  --device cpu --no-progress --out runs/a
$ACTLAB analyze runs/a --no-progress
"""
# the actlab the wrapper calls: the real one for record, a fake analyze that leaves 1,000 bytes and takes no training
FAKE_ACTLAB = """#!/usr/bin/env bash
if [ "$1" = record ]; then exec "{python}" -m actlab.cli "$@"; fi
mkdir -p "$2/analysis" && head -c 1000 /dev/zero > "$2/analysis/summary.json"
"""


def _one_thread_env() -> dict[str, str]:
    """The environment bench_snippets.py gives its commands: one torch thread, this clone's actlab first."""
    path = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _planted_folder(folder: Path) -> Path:
    """``folder`` with examples/planted.sh (:data:`PLANTED_SCRIPT`); returns the fake actlab (:data:`FAKE_ACTLAB`) made
    beside it."""
    (folder / "examples").mkdir()
    (folder / "examples" / "planted.sh").write_text(PLANTED_SCRIPT)
    fake = folder / "fake-actlab"
    fake.write_text(FAKE_ACTLAB.format(python=sys.executable))
    fake.chmod(0o755)
    return fake


def test_script_extrapolated_cuts_each_record_to_three_epochs_and_extrapolates_it(tmp_path):
    """A planted script records a 20-epoch synthetic run and analyses it (a fake analyze): through the wrapper the
    record runs 3 epochs (4 recorded), is extrapolated to 20 (21 recorded epochs, 21 epochs of dynamics), the analyze
    counts as timed, and the total is the record's extrapolation plus the analyze's seconds and bytes."""
    bench = _bench_snippets()
    fake = _planted_folder(tmp_path)
    env = _one_thread_env()
    lines, seconds, size = bench.script_extrapolated("bash examples/planted.sh", tmp_path, env, str(fake))

    calls = [json.loads(line) for line in (tmp_path / ".short-actlab-calls.jsonl").read_text().splitlines()]
    assert [call["argv"][:1] for call in calls] == [["record"], ["analyze"]] and all(c["exit"] == 0 for c in calls)
    store = tmp_path / "runs" / "a" / "store.zarr"
    import actlab

    wall = actlab.open_run(store.parent).metrics["wall_time"].values
    assert len(wall) == 4  # epochs 0..3: cut to 3
    grown = {part: bench.folder_size(store / part) for part in ("layers", "parameters", "dynamics")}
    per_epoch = float(np.median(np.diff(wall)))
    expected_seconds = calls[0]["seconds"] + 17 * per_epoch + calls[1]["seconds"]
    expected_size = (bench.folder_size(tmp_path / "runs") - sum(grown.values())  # the analysis's 1,000 bytes in it
                     + 21 * (grown["layers"] + grown["parameters"]) / 4 + 21 * grown["dynamics"] / 4)
    assert seconds == pytest.approx(expected_seconds) and size == pytest.approx(expected_size)
    assert "17 more epochs" in lines[0] and "21 recorded epochs" in lines[0] and lines[1].startswith("actlab analyze runs/a")
    assert lines[-1].startswith(f"total: {bench.duration_words(seconds)}, {bench.size_words(size / 1e6)} (1 records")


def test_after_short_runs_times_the_command_on_the_scripts_short_runs(tmp_path, monkeypatch):
    """The command of AFTER runs as written after its script's short run (edited first as EDITS says); its time and
    the bytes it wrote are the figure, and the file's total line gives the --bash line."""
    bench = _bench_snippets()
    fake = _planted_folder(tmp_path)
    command = "ls runs/a/analysis > listing.txt && sleep 0.5"
    monkeypatch.setitem(bench.AFTER, command, "bash examples/planted.sh")
    monkeypatch.setitem(bench.EDITS, command, ("examples/planted.sh", "--width 16", "--width 1{short}"))
    env = _one_thread_env()
    lines, seconds, added = bench.after_short_runs(command, tmp_path, env, str(fake))
    assert (tmp_path / "listing.txt").read_text() == "summary.json\n" and added == len("summary.json\n") and seconds >= 0.5
    assert lines[0] == "edited first: examples/planted.sh: --width 16 -> --width 13"
    assert "--width 13 " in (tmp_path / "examples" / "planted.sh").read_text()
    assert lines[-1] == (f"total: {seconds:.1f} s, 0.0 MB (run as written on the 3-epoch runs of bash examples/planted.sh; "
                         f"wall time {seconds:.1f} s; wrote 0.0 MB; exit 0)")
    out = tmp_path / "docs" / "benchmarks" / "planted_extrapolated.txt"
    out.parent.mkdir(parents=True)
    out.write_text(f"# python benchmarks/bench_snippets.py --extrapolate {shlex.quote(command)} {out}  (run x)\n"
                   + "\n".join(lines) + "\n")
    assert bench.extrapolated_lines(tmp_path) == {command: f"{seconds:.1f} s, 0.0 MB  (docs/benchmarks/planted_extrapolated"
                                                           f".txt: {lines[-1]})"}
