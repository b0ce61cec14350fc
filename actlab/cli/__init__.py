"""The ``actlab`` command line: a thin layer over the Python API.

Each subcommand lives in its own module (``record``, ``analyze``) and exposes
``add_parser(subparsers)``; the parser's ``func`` receives the parsed
arguments. User errors (:class:`actlab.errors.ActlabError`) become one line,
``actlab: error: ...``, and the error's exit code (2: bad input or a refused
output; 3: a failed write; 4: out of memory); ``--debug`` shows the traceback. A dependency that is not
installed (a clone used before ``pip install -e .``) is one line too, naming the module and the pip command, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from actlab import __version__, missing_dependency
from actlab.errors import OUT_OF_MEMORY, ActlabError


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors follow the house one-line format, ``actlab: error: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"actlab: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``actlab`` argument parser."""
    from actlab.cli import analyze, intervene, record

    parser = _Parser(
        prog="actlab",
        description=(
            "Record activations of training runs into Zarr stores once, analyse them offline as often as you like.\n\n"
            "  actlab record --model mlp7             train MLP7 on CIFAR-10 with 30% label noise, store activations\n"
            "  actlab analyze runs/mlp7               analyses, figures and report.html from the stored run\n"
            "  actlab compare runs/mlp7 runs/mlp5     several runs side by side in one report\n"
            "  actlab intervene runs/mlp7 --ablate    rewind layers or zero units of the stored model, on the probes"
        ),
        epilog=(
            "safety: no command deletes, renames or overwrites a file or folder that actlab did not write;\n"
            "one process writes a run or output folder at a time (others are refused with the holder's pid).\n\n"
            "exit codes: 0 done; 2 bad input or refused output (nothing written, nothing lost);\n"
            "3 a write failed (disk full, permissions): committed data stay readable, and\n"
            "'actlab record --resume RUN' finishes a run once space is freed; 4 out of memory\n"
            "(committed data stay readable); 130 interrupted."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"actlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    record.add_parser(subparsers)
    analyze.add_parser(subparsers)
    intervene.add_parser(subparsers)
    return parser


def _missing(exc: ModuleNotFoundError, debug: bool) -> int:
    """Print :func:`actlab.missing_dependency`'s line for a dependency that is not installed and return 2; re-raise
    ``exc`` when it is about no dependency (a missing module of actlab itself is a bug) or with ``--debug``."""
    message = missing_dependency(exc)
    if message is None or debug:
        raise exc
    print(f"actlab: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``actlab`` console script; returns the exit code."""
    try:
        parser = build_parser()
    except ModuleNotFoundError as exc:  # a clone used before pip install -e .
        return _missing(exc, debug="--debug" in (sys.argv[1:] if argv is None else argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # name the subcommand's help, where its flags are listed
        parser.exit(2, f"actlab: error: unrecognized arguments: {' '.join(unknown)}; see 'actlab {args.command} --help'\n")
    try:
        return int(args.func(args) or 0)
    except ActlabError as exc:
        if args.debug:
            raise
        print(f"actlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except MemoryError as exc:  # sizes a store declares (a damaged or crafted one) or settings beyond this machine
        if args.debug:
            raise
        from actlab.store import exception_line

        print(f"actlab: error: out of memory ({exception_line(exc)}); check the sizes the input declares (a damaged or "
              "crafted store?) or the settings, or free memory, then run the command again", file=sys.stderr)
        return OUT_OF_MEMORY
    except ModuleNotFoundError as exc:
        return _missing(exc, debug=args.debug)
    except KeyboardInterrupt:
        print("actlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
