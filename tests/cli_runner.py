"""Run the ``actlab`` command line in-process and capture what it prints (shared by the CLI tests)."""

from __future__ import annotations

import contextlib
import io
import warnings

from actlab.cli import main


def run_cli(*argv: object) -> tuple[int, str, str]:
    """``actlab ARGV`` through :func:`actlab.cli.main`: (exit code, stdout, stderr); warnings are silenced."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
