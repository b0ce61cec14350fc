"""Every ``actlab`` command in the fenced blocks of README.md and docs/*.md parses with actlab's own parser, and a
``record`` command's settings validate, as written; every Python block of README.md compiles. Every bash command of
those pages has its line in docs/benchmarks/snippets.txt (written by ``benchmarks/bench_snippets.py --bash``), and the
page states that line's time and size beside the command, or the line names the test that runs it."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

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
    """Each docs/benchmarks/*_timed.txt (``bench_snippets.py --time``) gives its command's line of snippets.txt, and
    that command is not also listed as not measured."""
    bench = _bench_snippets()
    timed = bench.timed_lines()
    assert timed, "no docs/benchmarks/*_timed.txt"
    text = SNIPPETS.read_text()
    for command, line in timed.items():
        assert f"$ {command}  =>  {line}\n" in text, f"snippets.txt lacks the line of {command!r}: {line}"
        assert command not in bench.NOT_MEASURED, command


def test_the_not_measured_lines_are_what_bench_snippets_writes():
    """snippets.txt's ``not measured`` lines give the reasons of bench_snippets.py's NOT_MEASURED, so that
    ``--bash`` writes them again (a hand-written line would drift from the script)."""
    bench = _bench_snippets()
    not_measured = {command: source for command, (figure, source) in _figures().items() if figure == "not measured"}
    assert not_measured and not_measured == bench.NOT_MEASURED


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
