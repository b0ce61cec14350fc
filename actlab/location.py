"""Where a run or an output lives: a local path, or a URL that fsspec opens (``s3://``, ``gs://``, ``memory://``).

A *location* is a :class:`~pathlib.Path` for a local folder (a ``file://`` URL becomes one too, so every
local safety of :mod:`actlab.files` applies to it) and a ``str`` URL for anything else. Everything that
reads or writes bytes of a store takes a location and goes through :func:`files` (fsspec byte access,
used for local paths as well, so that one code path serves both) or :func:`zarr_store` (what zarr opens:
the path itself for a local folder, a :class:`zarr.storage.FsspecStore` for a URL).

A path is resolved into a location once, where it enters: the CLI, or a public function that takes
``str | os.PathLike`` (:func:`actlab.analysis.open_run`, :func:`actlab.workflow.analyze_to_dir`,
:func:`actlab.store.open_store`, ...). Below that boundary functions take the :data:`Location` (typed so) and
pass it on; they never resolve it again.

Storage options (endpoint, credentials, region) come from the environment, as fsspec and the cloud SDKs
read them: e.g. ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` for S3, or fsspec's
``FSSPEC_<PROTOCOL>_<OPTION>`` variables (``FSSPEC_S3_ENDPOINT_URL``), or ``fsspec.config.conf`` in Python.
Dask workers in other processes read the same environment, so a run URL alone is enough to hand them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

Location = Path | str
"""A local folder (Path) or a remote URL (str)."""


def is_url(target: str | os.PathLike) -> bool:
    """Whether ``target`` is written as a URL (``scheme://...``), ``file://`` included."""
    return isinstance(target, str) and "://" in target and target.split("://", 1)[0].replace("+", "").isalnum()


def location(target: str | os.PathLike) -> Location:
    """The location named by ``target``: a Path for a local path or ``file://`` URL, else the URL without trailing ``/``."""
    if isinstance(target, Path) or not is_url(target):
        return Path(target)
    parts = urlsplit(str(target))
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return str(target).rstrip("/")


def is_remote(loc: Location) -> bool:
    """Whether ``loc`` (from :func:`location`) is a URL, i.e. not a local folder."""
    return isinstance(loc, str)


def join(loc: Location, *names: str) -> Location:
    """``loc`` with ``names`` appended (``/`` for a URL)."""
    return "/".join([loc, *names]) if is_remote(loc) else loc.joinpath(*names)


def basename(loc: Location) -> str:
    """The last component of ``loc`` (the run's name)."""
    return loc.rsplit("/", 1)[-1] if is_remote(loc) else loc.name


@dataclass(frozen=True)
class Files:
    """Byte access below one root through fsspec: local folders and object stores alike.

    Attributes
    ----------
    fs : fsspec.AbstractFileSystem
    root : str
        The root as a path of ``fs`` (no protocol).
    """

    fs: fsspec.AbstractFileSystem
    root: str

    def path(self, key: str) -> str:
        """The ``fs`` path of ``key`` (``a/b/c``) below the root."""
        return f"{self.root}/{key}" if key else self.root

    def size(self, key: str) -> int | None:
        """Size in bytes of the file or object ``key``; None when it does not exist (or is a folder)."""
        try:
            info = self.fs.info(self.path(key))
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start:end`` of ``key`` (one ranged GET on an object store)."""
        return self.fs.cat_file(self.path(key), start=start, end=end)

    def read(self, key: str) -> bytes:
        """All bytes of ``key``."""
        return self.fs.cat_file(self.path(key))

    def sha256(self, key: str, piece: int = 16 * 2**20) -> bytes:
        """SHA-256 of all bytes of ``key`` (32 bytes), read ``piece`` bytes at a time, so that hashing a large
        shard holds one piece, not the file."""
        digest = hashlib.sha256()
        with self.fs.open(self.path(key), "rb") as stream:
            while data := stream.read(piece):
                digest.update(data)
        return digest.digest()

    def write(self, key: str, data: bytes) -> None:
        """Write ``key`` whole (one PUT on an object store: readers see the old object or the new one)."""
        self.fs.pipe_file(self.path(key), data)

    def keys(self) -> list[str]:
        """Every file below the root, relative to it (empty when the root does not exist)."""
        try:
            found = self.fs.find(self.root)
        except FileNotFoundError:
            return []
        prefix = self.root.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in found if p.startswith(prefix))


def files(loc: Location) -> Files:
    """:class:`Files` rooted at ``loc``; a remote listing cache is dropped first, so the view is current."""
    if not is_remote(loc):
        return Files(LocalFileSystem(), str(Path(os.path.abspath(loc))))
    fs, root = fsspec.core.url_to_fs(loc)
    fs.invalidate_cache(root)
    return Files(fs, root.rstrip("/"))


def zarr_store(loc: Location, *, read_only: bool) -> Path | object:
    """What zarr opens for ``loc``: the Path of a local folder, else a :class:`zarr.storage.FsspecStore`."""
    if not is_remote(loc):
        return loc
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(loc, read_only=read_only)
