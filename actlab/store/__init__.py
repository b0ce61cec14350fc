"""The run store (moved from actlab/store.py; split into schema, writer, reader and integrity next)."""

from actlab.store.schema import *  # noqa: F401,F403
