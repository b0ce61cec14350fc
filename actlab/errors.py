"""User-facing errors.

Every error a user can cause by bad input derives from :class:`ActlabError`.
The command line turns it into one line, ``actlab: error: <message>``, and
its :attr:`~ActlabError.exit_code`; the Python API lets it propagate unchanged.

Exit codes of the ``actlab`` command:

- 0: done;
- 2: bad input or a refused output (nothing was written or lost);
- 3: a write failed (disk full, permissions, I/O error); what was committed stays
  readable, and ``actlab record --resume RUN`` finishes a run once the cause is fixed;
- 4: out of memory (sizes a damaged or crafted store declares, or settings beyond the machine); what was
  committed stays readable;
- 130: interrupted.
"""

from __future__ import annotations


class ActlabError(Exception):
    """Bad input or state that the user can fix; the message says how."""

    exit_code = 2


class ConfigError(ActlabError, ValueError):
    """A configuration value, flag or config file is invalid."""


class DataError(ActlabError):
    """A dataset cannot be found, read or verified."""


class StoreError(ActlabError):
    """A run store is missing, of another schema version, or damaged."""


class OutputError(ActlabError):
    """An output path that actlab refuses to write: it would delete, replace or mix what actlab did not write."""


class WriteError(StoreError):
    """Writing failed part-way (disk full, permissions); committed data stay readable."""

    exit_code = 3


OUT_OF_MEMORY = 4
"""Exit code of a command that ran out of memory."""


def clipped_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a one-line message (a value too deeply nested to show is
    named so)."""
    try:
        text = repr(value)
    except RecursionError:
        return "(nested too deeply to show)"
    return text if len(text) <= limit else text[:limit - 3] + "..."
