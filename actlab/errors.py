"""User-facing errors.

Every error a user can cause by bad input derives from :class:`ActlabError`.
The command line turns it into one line, ``actlab: error: <message>``, and
exit code 2; the Python API lets it propagate unchanged.
"""

from __future__ import annotations


class ActlabError(Exception):
    """Bad input or state that the user can fix; the message says how."""


class ConfigError(ActlabError, ValueError):
    """A configuration value, flag or config file is invalid."""


class DataError(ActlabError):
    """A dataset cannot be found, read or verified."""


class StoreError(ActlabError):
    """A run store is missing, of another schema version, or damaged."""
