"""Every ``actlab`` command in the fenced blocks of README.md and docs/*.md parses with actlab's own parser, and a
``record`` command's settings validate, as written; every Python block of README.md compiles. (The record snippets'
time and size are measured by benchmarks/bench_snippets.py and stated beside them.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from actlab.cli import build_parser
from actlab.cli.record import config_from_args
from conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


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
