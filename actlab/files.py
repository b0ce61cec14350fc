"""File safety: what actlab may write where, one writer at a time, and writes that are never half-done.

Every folder actlab writes carries a marker file, :data:`MARKER_FILENAME`, that names its kind
(:data:`KINDS`). An output goes into a new folder, an empty folder, or a folder whose marker names
the same kind; anything else is refused (:func:`check_output`). A folder is built in a hidden
sibling (``.NAME.XXXX.partial``) and swapped in with one atomic rename (:func:`staged_dir`), so a
reader sees the old folder or the new one, never none. One process writes a folder at a time: the
writer holds an OS-level lock (:func:`writer_lock`, through :mod:`filelock`), which the kernel
releases when the process dies, so a killed writer never blocks the next one. What an interrupted
writer left behind (staging folders, temporary files) is removed by the next writer under the lock
(:func:`remove_leftovers`). Created files and folders follow the user's umask.

Every marker carries the digest of its content (:mod:`actlab.digest`); a marker that fails it is reported, never
read (:func:`read_marker`). Data written for a commit is flushed to disk before the commit (:func:`fsync_paths`).

This module imports nothing from the rest of actlab but its errors and digests.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import filelock

from actlab.digest import DIGEST_KEY, digest_problem, with_digest
from actlab.errors import OutputError, StoreError, WriteError, clipped_repr

MARKER_FILENAME = ".actlab.json"
"""Marker file of every folder actlab writes: ``{"kind": KIND}``."""

KINDS: tuple[str, ...] = ("run", "analysis", "comparison", "results", "ensemble")
"""Kinds of folders actlab writes: a run, a run's analysis folder, a comparison folder, saved results, an
ensemble of runs (one run folder per seed inside, :func:`replica_dirs`)."""

ENCLOSING_KINDS: tuple[str, ...] = ("run", "ensemble")
"""Kinds of folders no output may lie inside, other than the one each ``allowed_inside`` names (a run's own analysis)."""

ZARR_KIND_ATTR = "actlab_kind"
"""Root attribute that marks a Zarr folder written by actlab (saved results), in place of a marker file."""

LOCK_SUFFIX = ".lock"
FOLDER_LOCK_FILENAME = ".actlab.lock"
"""Writer lock kept inside a folder that is never swapped whole (a run folder)."""
HOLDER_SUFFIX = ".holder"
PARTIAL_SUFFIX = ".partial"

_ZARR_TEMP = re.compile(r"\.[0-9a-f]{32}\.partial$")
"""Temporary chunk files of zarr's local store (``<key>.<uuid hex>.partial``), left by a killed write."""


# -- permissions ------------------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a plain ``mkdir``/``open`` would have given it under the current umask.

    ``tempfile.mkdtemp`` and ``mkstemp`` create private (0700/0600) entries; a run folder or report
    that others in a group may read should not be.
    """
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return the folders created, outermost first."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    for folder in reversed(missing):
        folder.mkdir()
    return list(reversed(missing))


# -- markers and output checks ----------------------------------------------------------------------------


def marker_kind(folder: str | os.PathLike) -> str | None:
    """The kind named by ``folder``'s marker, or None when it has none (or an unreadable one).

    The marker is the file :data:`MARKER_FILENAME`, or, in a Zarr folder (where a foreign file would
    trouble zarr), the root attribute :data:`ZARR_KIND_ATTR`.
    """
    folder = Path(folder)
    try:
        if (folder / MARKER_FILENAME).is_file():
            kind = read_marker(folder).get("kind")
        else:
            kind = json.loads((folder / "zarr.json").read_text(encoding="utf-8")).get("attributes", {}).get(ZARR_KIND_ATTR)
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in KINDS else None


def write_marker(folder: str | os.PathLike, kind: str, **details: Any) -> None:
    """Mark ``folder`` as written by actlab, of ``kind``; ``details`` (JSON-ready) describe it further."""
    from actlab import __version__

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    text = json.dumps(with_digest({"kind": kind, **details, "actlab_version": __version__})) + "\n"
    path = Path(folder) / MARKER_FILENAME
    if path.is_file() and not path.is_symlink() and path.read_bytes() == text.encode("utf-8"):
        return  # already so marked: left as it is
    write_atomic(path, text)


def read_marker(folder: str | os.PathLike) -> dict[str, Any]:
    """The marker file of ``folder`` as a mapping; empty when it has none (or one that is not JSON).

    Raises
    ------
    StoreError
        When the marker is JSON but fails its digest (edited or damaged since actlab wrote it).
    """
    path = Path(folder) / MARKER_FILENAME
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(marker, dict):
        return {}
    problem = digest_problem(marker) if DIGEST_KEY in marker else None  # markers of releases before digests have none
    if problem:
        raise StoreError(f"marker {path} {problem}; actlab does not act on it: restore the folder from a copy, "
                         "or move it aside and record again")
    return marker


def replica_name(seed: int) -> str:
    """Folder name of the replica of ``seed`` inside an ensemble folder: ``seed<S>``."""
    return f"seed{seed}"


def replica_dirs(path: str | os.PathLike) -> list[Path]:
    """The run folders of the ensemble at ``path``, in the order of its seeds; empty for anything else (a single run).

    An ensemble folder (``actlab record --seeds``) holds one complete run per seed, ``seed<S>/``, and a
    marker that lists them: ``{"kind": "ensemble", "seeds": [...], "replicas": ["seed0", ...]}``. The folders
    are derived from the seeds, never taken from the marker: a marker whose seeds are not distinct integers
    >= 0, or whose ``replicas`` are not ``seed<S>`` of those seeds, is refused, and so is a replica that is a
    symbolic link.

    Raises
    ------
    StoreError
        The marker or a replica folder is not what actlab writes.
    """
    marker = read_marker(path)
    if marker.get("kind") != "ensemble":
        return []
    where = Path(path) / MARKER_FILENAME
    seeds = marker.get("seeds")
    if (not isinstance(seeds, list) or not seeds or not all(type(seed) is int and seed >= 0 for seed in seeds)
            or len(set(seeds)) != len(seeds)):
        raise StoreError(f"{where} lists the seeds {clipped_repr(seeds)}, not distinct integers >= 0; the ensemble marker is "
                         "damaged or not actlab's: restore it, or record the ensemble again into a new folder")
    names = [replica_name(seed) for seed in seeds]
    if marker.get("replicas", names) != names:
        raise StoreError(f"{where} lists the replicas {clipped_repr(marker.get('replicas'))}, not {names} of its seeds; the "
                         "ensemble marker is damaged or not actlab's: restore it, or record the ensemble again into a new folder")
    folders = [Path(path) / name for name in names]
    linked = next((folder for folder in folders if folder.is_symlink()), None)
    if linked is not None:
        raise StoreError(f"the replica {linked} is a symbolic link, not a run folder of the ensemble {path}; "
                         "put the run itself there, or record the ensemble again into a new folder")
    return folders


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve(strict=False)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _link_before_parent(given: Path) -> Path | None:
    """The symbolic link that a ``..`` of ``given`` goes up from (``link/../x``: the parent of the link's target, not
    of the link), or None when no ``..`` follows a link."""
    prefix, link = Path(), None
    for part in given.parts:
        if part == ".." and link is not None:
            return link
        prefix = prefix / part
        if link is None and prefix.is_symlink():
            link = prefix
    return None


def _enclosing_output(path: Path) -> str | None:
    """What ``path`` lies inside that no output may: a run or an ensemble (by its marker), or a Zarr store (a
    ``zarr.json`` in the folder); None when nothing."""
    for folder in path.parents:
        kind = marker_kind(folder)
        if kind in ENCLOSING_KINDS:
            return f"the actlab {kind} {folder}"
        if (folder / "zarr.json").is_file():
            return f"the Zarr store {folder}"
    return None


def check_output(
    target: str | os.PathLike,
    kind: str,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    allowed_inside: Iterable[str | os.PathLike] = (),
    replace: bool = True,
    flag: str = "--out",
) -> None:
    """Refuse an output folder that actlab may not write; return when ``target`` is safe to (re)write.

    Parameters
    ----------
    target : path
        The folder the command will write.
    kind : str
        One of :data:`KINDS`: the marker an existing, non-empty ``target`` must carry.
    inputs : iterable of path
        Input runs: ``target`` may not equal, lie inside or contain any of them.
    allowed_inside : iterable of path
        Folders inside an input that may be written all the same (a run's own ``analysis/``).
    replace : bool
        Whether an existing folder of the same kind may be replaced; when False it is refused too.
    flag : str
        The option that named ``target``, for the message.

    Raises
    ------
    OutputError
        With one line saying what is wrong and what to do instead.
    """
    given = Path(target)
    link = _link_before_parent(given)
    if link is not None:
        raise OutputError(f"{flag} {given} goes up ('..') from inside the symbolic link {link}; give the folder's path "
                          "without '..' after a link")
    path = _resolved(target)
    allowed = {_resolved(p) for p in allowed_inside}
    for source in inputs:
        run = _resolved(source)
        if path in allowed:
            continue
        if _is_within(path, run):
            hint = f" (the run's own analysis goes to {Path(source) / 'analysis'} by default)" if kind == "analysis" else ""
            raise OutputError(f"{flag} {given} lies inside the input run {source}; choose a folder outside it{hint}")
        if _is_within(run, path):
            raise OutputError(f"{flag} {given} contains the input run {source}; choose a new folder that holds no input run")
    if kind not in ENCLOSING_KINDS and path not in allowed:
        enclosing = _enclosing_output(path)
        if enclosing is not None:
            raise OutputError(f"{flag} {given} lies inside {enclosing}, which holds only what actlab writes there "
                              "(a run's own analysis goes to RUN/analysis); choose a folder outside it")
    if given.is_symlink():
        raise OutputError(f"{flag} {given} is a symbolic link; give the folder it points to, or a new folder")
    if kind != "run" and os.path.ismount(path):
        raise OutputError(f"{flag} {given} is a mount point, which cannot be replaced by a rename as actlab replaces an "
                          "output folder; choose a folder inside it")
    if not path.exists():
        existing = next(folder for folder in path.parents if folder.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {given} cannot be created ({existing} is not a writable folder); choose another {flag}")
        return
    if not path.is_dir():
        raise OutputError(f"{flag} {given} is a file, not a folder; choose a new folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {given} is not writable; choose another {flag}")
    own_locks = {FOLDER_LOCK_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX}
    if all(entry.name in own_locks for entry in path.iterdir()):
        return
    found = marker_kind(path)
    if found != kind:
        what = f"an actlab {found} folder" if found else "files actlab did not write"
        raise OutputError(f"{flag} {given} holds {what}; choose a new or empty folder")
    if not replace:
        raise OutputError(f"{flag} {given} already holds an actlab {kind}; choose a new folder")


# -- locks ------------------------------------------------------------------------------------------------


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of an output folder: a hidden sibling, ``.NAME.lock``, that outlives swaps of the folder."""
    target = Path(target)
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the OS-level lock at ``path`` while the block runs; refuse at once when another process holds it.

    The lock is :class:`filelock.FileLock` (``flock`` on POSIX): the kernel drops it when its
    process exits, ``kill -9`` included. The lock file stays (deleting it would let two processes
    lock two different files of one name). While held, the holder's process id and host are written
    beside it (``<path>.holder``) so that a refusal can name them. Readers never take the lock.

    Parameters
    ----------
    path : path
        The lock file (created when missing, never deleted).
    what : str
        What the lock guards, for the message (``"run runs/mlp7"``).

    Raises
    ------
    OutputError
        When another process holds the lock.
    """
    path = Path(path)
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OutputError(f"{what} is being written by {_holder(path)}; wait for it to finish, "
                          "or stop that process and run the command again") from None
    holder = Path(f"{path}{HOLDER_SUFFIX}")
    try:
        follow_umask(path)
        write_atomic(holder, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv}) + "\n")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def lock_holder(path: str | os.PathLike) -> str | None:
    """Who holds the writer lock at ``path`` (``"process PID on HOST"``), or None when nobody does.

    Takes and drops the lock at once to find out; a missing lock file means nobody holds it (and is not created).
    """
    path = Path(path)
    if not path.is_file():
        return None
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return _holder(path)
    except OSError:
        return None
    lock.release()
    return None


def _holder(path: Path, wait: float = 2.0) -> str:
    """The holder named in ``<path>.holder``; waits a moment for a holder that has just taken the lock to write it.

    A holder file that names a dead process on this host is stale (its writer was killed and the lock has
    changed hands since): it is read again until the new holder has replaced it.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            data = json.loads(Path(f"{path}{HOLDER_SUFFIX}").read_text(encoding="utf-8"))
            pid, host = int(data["pid"]), data.get("host", "this host")
            if host != socket.gethostname() or _alive(pid):
                return f"process {pid} on {host}"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if time.monotonic() >= deadline:
            return "another process"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- leftovers --------------------------------------------------------------------------------------------


def is_leftover(entry: str, name: str) -> bool:
    """Whether the file name ``entry`` is a staging folder or temporary file of a writer of ``name`` (``.NAME.XXXXXXXX.partial``:
    :func:`tempfile.mkstemp`'s eight characters, so that the leftovers of ``rep`` are never those of ``rep.v2``)."""
    return re.fullmatch(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}{re.escape(PARTIAL_SUFFIX)}", entry) is not None


def remove_leftovers(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove what an interrupted writer of ``folder/name`` left: staging folders and temporary files.

    Call only while holding the writer lock of ``folder/name``: then no live process owns them.
    Removes ``folder/.NAME.XXXXXXXX.partial`` (:func:`is_leftover`: staging folders and files of :func:`staged_dir`,
    :func:`write_atomic`) and, inside ``folder/name``, zarr's temporary chunk files
    (``*.<hex>.partial``).

    Returns
    -------
    list of Path
        What was removed.
    """
    folder = Path(folder)
    removed = []
    candidates = [p for p in folder.iterdir() if is_leftover(p.name, name)] if folder.is_dir() else []
    inside = folder / name
    if inside.is_dir() and not inside.is_symlink():
        candidates += [Path(root) / f for root, _, files in os.walk(inside) for f in files if _ZARR_TEMP.search(f)]
    for path in candidates:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


# -- atomic writes ----------------------------------------------------------------------------------------


def fsync_paths(paths: Iterable[str | os.PathLike], folders: Iterable[str | os.PathLike] = ()) -> None:
    """Flush the files ``paths``, then the ``folders`` and the folder of each file, to disk (``fsync``), each once.

    Called before the write that makes them visible (a commit), so that a power loss cannot leave a commit that
    points at data the disk never received: file contents first, then the folder entries that their renames and
    any new folders created (give those folders, and the one that gained each, in ``folders``).
    """
    files = list(dict.fromkeys(Path(p) for p in paths))
    for path in files:
        _fsync(path, os.O_RDONLY)
    for folder in dict.fromkeys([*(path.parent for path in files), *map(Path, folders)]):
        _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``path`` whole or not at all: a temporary sibling (``.NAME.XXXX.partial``), fsync, then a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def exchange(first: str | os.PathLike, second: str | os.PathLike) -> None:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Where the call is missing (not Linux, or an old C library) or the file system refuses it, the
    swap falls back to two renames through a unique hidden name, with a moment in between in which
    ``second`` does not exist.
    """
    first, second = Path(first), Path(second)
    if _renameat2_exchange(first, second):
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{second.name}.", suffix=".swap", dir=second.parent))
    os.replace(second, holder)
    os.replace(first, second)
    os.replace(holder, first)


def _renameat2_exchange(first: Path, second: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def swap_in(built: Path, target: Path) -> None:
    """Put the finished folder ``built`` in the place of ``target`` in one atomic step.

    A new or empty ``target`` is replaced by a rename; one that holds an earlier version (which the
    caller has checked is its own to replace) is exchanged with ``built`` (:func:`exchange`) and
    then deleted.
    """
    if target.is_dir() and any(target.iterdir()):
        exchange(built, target)
        shutil.rmtree(built)
    else:
        os.replace(built, target)


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike, kind: str, *, inputs: Iterable[str | os.PathLike] = (),
               allowed_inside: Iterable[str | os.PathLike] = (), marker_file: bool = True) -> Iterator[Path]:
    """Build the folder ``target`` in a hidden sibling and swap it in only when the block succeeds.

    Under the folder's writer lock: refuse ``target`` unless :func:`check_output` allows it, remove
    an interrupted writer's leftovers, build in ``.NAME.XXXX.partial`` (marked as ``kind``), then put
    it in place with one atomic rename (an exchange when ``target`` holds an earlier output of the
    same kind, which is then deleted). Readers see the old folder or the new one, never none and
    never a mix. On any error the staging folder is removed and ``target`` is left as it was; a failed
    write (``OSError``: disk full, permissions) is raised as :class:`~actlab.errors.WriteError`.

    Parameters
    ----------
    target : path
        The output folder.
    kind : str
        One of :data:`KINDS`.
    inputs, allowed_inside
        As for :func:`check_output`.
    marker_file : bool
        Write the marker file; False for a Zarr folder, whose writer sets :data:`ZARR_KIND_ATTR` instead.

    Yields
    ------
    Path
        The staging folder to write into.
    """
    target = Path(target)
    check_output(target, kind, inputs=inputs, allowed_inside=allowed_inside)
    created = make_dirs(target.parent)
    try:
        with writer_lock(lock_path(target), f"{kind} folder {target}"):
            check_output(target, kind, inputs=inputs, allowed_inside=allowed_inside)
            remove_leftovers(target.parent, target.name)
            built = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent))
            try:
                follow_umask(built)
                if marker_file:
                    write_marker(built, kind)
                yield built
                check_output(target, kind, inputs=inputs, allowed_inside=allowed_inside)
                swap_in(built, target)
            except BaseException:
                shutil.rmtree(built, ignore_errors=True)
                raise
    except OSError as exc:  # disk full, permissions, an I/O error: one line and exit code 3, the old output kept
        remove_created(created, keep=(LOCK_SUFFIX, HOLDER_SUFFIX))
        raise write_failed(exc, f"the {kind} folder {target}") from exc
    except BaseException:
        remove_created(created, keep=(LOCK_SUFFIX, HOLDER_SUFFIX))
        raise


def remove_created(folders: list[Path], keep: tuple[str, ...] = ()) -> None:
    """Remove folders this command created (``make_dirs``), innermost first, if they hold nothing else.

    Files whose names end in one of ``keep`` (this command's own lock files) do not count as content.
    """
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            if all(entry.name.endswith(keep) and entry.is_file() for entry in folder.iterdir()):
                shutil.rmtree(folder)


def write_failed(error: BaseException, what: str) -> WriteError:
    """The user-facing error for a failed write of ``what`` (disk full, permissions, an I/O error, a storage endpoint
    gone), on one line."""
    cause = " ".join(str(error).split()) or type(error).__name__
    return WriteError(f"writing {what} failed ({cause[:300]}); free disk space, or fix permissions or the connection, "
                      "then run the command again (a run: 'actlab record --resume RUN')")
