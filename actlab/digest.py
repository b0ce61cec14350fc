"""Digests of what actlab writes, so that what it reads back can be checked: JSON documents and byte strings.

A JSON document actlab writes (a store's root and group attributes, a folder marker) carries the SHA-256 of its
canonical form under :data:`DIGEST_KEY`; reading it back recomputes the digest and compares
(:func:`digest_problem`). The canonical form is the document without :data:`DIGEST_KEY`, as Python's
``json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)`` writes it, encoded
as UTF-8 (``docs/store-format.md``, Digests). Checkpoints are digested whole with SHA-256; store shards as
:func:`actlab.store.integrity.shard_digest` says.

This module imports nothing from the rest of actlab.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

DIGEST_KEY = "actlab_digest"
"""Key of the digest in a JSON document: ``"sha256:<64 hex digits>"`` of the document's canonical form."""


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """The canonical form of ``doc`` (without :data:`DIGEST_KEY`), the bytes its digest covers."""
    rest = {key: value for key, value in doc.items() if key != DIGEST_KEY}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode("utf-8")


def json_digest(doc: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of the canonical form of ``doc``."""
    return "sha256:" + hashlib.sha256(canonical_json(doc)).hexdigest()


def with_digest(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with :data:`DIGEST_KEY` set to its digest (any digest it held before is replaced)."""
    return {**{key: value for key, value in doc.items() if key != DIGEST_KEY}, DIGEST_KEY: json_digest(doc)}


def digest_problem(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with the digest of ``doc`` (missing, or not that of its content); None when it matches."""
    found = doc.get(DIGEST_KEY)
    if found is None:
        return f"has no {DIGEST_KEY}"
    if found != json_digest(doc):
        return f"fails its {DIGEST_KEY} check (its content was changed or damaged after it was written)"
    return None

