"""The claim of a run folder by ``record``: check it may be written, lock it, mark it, and undo the claim on failure.

A run (:func:`claimed_run_dir`) and an ensemble (:func:`claimed_folder` with the kind ``ensemble``) are claimed
the same way; :func:`locked_run` holds a run's lock for ``--resume``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from actlab.errors import OutputError, StoreError
from actlab.files import (
    FOLDER_LOCK_FILENAME,
    HOLDER_SUFFIX,
    MARKER_FILENAME,
    check_output,
    is_leftover,
    lock_holder,
    lock_path,
    make_dirs,
    marker_kind,
    read_marker,
    remove_created,
    remove_leftovers,
    replica_dirs,
    write_atomic,
    write_failed,
    write_marker,
    writer_lock,
)
from actlab.location import Location, is_remote
from actlab.remote import check_remote_run, claimed_remote_run
from actlab.store import (
    ANALYSIS_DIRNAME,
    CHECKPOINT_DIGEST_FILENAME,
    CHECKPOINT_FILENAME,
    STORE_DIRNAME,
    RunWriter,
    read_attrs,
    recorded_run_id,
    store_path,
)

RUN_OUTPUTS: tuple[str, ...] = (STORE_DIRNAME, CHECKPOINT_FILENAME, CHECKPOINT_DIGEST_FILENAME)
"""What a recording writes into its run folder besides the marker and the lock (what a failed claim removes)."""


def check_run_output(run_dir: Location, *, overwrite: bool) -> None:
    """Refuse a run folder that ``record`` may not write; every refusal names a way forward.

    A run goes into a new folder or an empty one; ``overwrite`` also allows a folder that holds an
    actlab run (its marker says so), and nothing else. A refusal suggests ``--resume`` and
    ``--overwrite`` only where ``--overwrite`` would be allowed (not for a symbolic link to a run).

    Raises
    ------
    OutputError
    """
    if is_remote(run_dir):
        check_remote_run(run_dir, overwrite=overwrite)
        return
    inside = next((folder for folder in Path(os.path.abspath(run_dir)).parents if marker_kind(folder) == "run"), None)
    if inside is not None:
        raise OutputError(f"--out {run_dir} lies inside the run {inside}; choose a folder outside it")
    if store_path(run_dir).exists() and marker_kind(run_dir) != "run":
        raise OutputError(f"--out {run_dir} holds a run store that this actlab did not mark as its own; "
                          "choose a new --out (or continue it with 'actlab record --resume')")
    if abandoned_claim(run_dir):
        return
    check_record_output(run_dir, "run", overwrite=overwrite)


def check_record_output(folder: Path, kind: str, *, overwrite: bool) -> None:
    """Refuse a local folder that ``record`` may not write as a ``kind`` folder (``"run"``, ``"ensemble"``).

    A new or empty folder is allowed; with ``overwrite``, also one that holds a ``kind`` of actlab's. Without
    it, such a folder is refused with the way forward (``--resume``, or ``--overwrite`` where that would be
    allowed: not for a symbolic link or a folder without write access).

    Raises
    ------
    OutputError
    """
    if overwrite:
        check_output(folder, kind, replace=True)
        check_replaceable(folder, kind)
        return
    try:
        check_output(folder, kind, replace=False)
    except OutputError:
        if marker_kind(folder) == kind:
            check_output(folder, kind, replace=True)  # what --overwrite would refuse too: a link, no write access
            check_replaceable(folder, kind)
            article = "an" if kind[0] in "aeiou" else "a"
            raise OutputError(f"{folder} already holds {article} {kind}; continue it with 'actlab record --resume {folder}', "
                              "replace it with --overwrite, or choose a new --out") from None
        raise


def check_replaceable(folder: Path, kind: str) -> None:
    """Refuse to replace ``folder`` (a ``kind`` folder by its marker) unless actlab wrote what is in it: a run's store
    opens as an actlab run with the run id its marker names; each replica of an ensemble (derived from its seeds) is
    such a run, or what a recording killed before its store existed left, or absent.

    Raises
    ------
    OutputError
        A marker copied into a folder of other files, or beside another run's store: replacing would delete what
        actlab did not write there.
    """
    if not folder.is_dir() or abandoned_claim(folder, kind):
        return
    if kind == "run":
        check_own_run(folder)
        return
    if kind == "ensemble":
        try:
            replicas = replica_dirs(folder)
        except StoreError as exc:
            raise OutputError(str(exc)) from None
        for replica in replicas:
            if replica.exists() and not abandoned_claim(replica):
                check_own_run(replica)


def check_own_run(run_dir: Path) -> None:
    """Refuse unless the store of ``run_dir`` opens as an actlab run whose run id is the one the folder's marker names.

    Raises
    ------
    OutputError
    """
    marker = read_marker(run_dir)
    marked = marker.get("run_id")
    try:
        attrs = read_attrs(run_dir)
    except StoreError as exc:
        raise OutputError(f"{run_dir} is marked as an actlab run, but its store does not open as one ({exc}); actlab "
                          "did not write what is there, so it replaces none of it: choose a new --out") from None
    found = recorded_run_id(attrs)
    if found is None or found not in (marked, marker.get("replaces")):  # "replaces": killed while replacing its store
        raise OutputError(f"{run_dir} is marked as the actlab run {marked}, but its store holds the run {found} (a marker or "
                          "a store copied from elsewhere, or a marker of an earlier actlab); actlab replaces only what it "
                          "wrote: choose a new --out")


def abandoned_claim(run_dir: Path, kind: str = "run") -> bool:
    """Whether ``run_dir`` holds only what a ``record`` of a ``kind`` folder killed (or undone) before its store (an
    ensemble: its first replica folder) existed left: the marker, the lock files (the folder's, its analysis folder's)
    and temporary files or staging folders of those (removed under the lock), a marker killed mid-write included."""
    if not run_dir.is_dir() or run_dir.is_symlink() or store_path(run_dir).exists() or marker_kind(run_dir) not in (None, kind):
        return False
    analysis_lock = lock_path(run_dir / ANALYSIS_DIRNAME).name
    own = {MARKER_FILENAME, FOLDER_LOCK_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX, analysis_lock, analysis_lock + HOLDER_SUFFIX}
    entries = list(run_dir.iterdir())
    return bool(entries) and all(entry.name in own or any(is_leftover(entry.name, name) for name in (STORE_DIRNAME, CHECKPOINT_FILENAME, *own))
                                 for entry in entries)


def refuse_if_busy(folder: Path, kind: str = "run") -> None:
    """Refuse at once, naming the holder, when another process is writing ``folder``."""
    holder = lock_holder(folder / FOLDER_LOCK_FILENAME)
    if holder is not None:
        raise OutputError(f"{kind} {folder} is being written by {holder}; wait for it to finish, "
                          "or stop that process and run the command again")


def check_run_output_or_busy(run_dir: Location, *, overwrite: bool) -> None:
    """:func:`check_run_output`, except that a local folder another process is writing is refused as busy (naming it)."""
    try:
        check_run_output(run_dir, overwrite=overwrite)
    except OutputError:
        if not is_remote(run_dir):
            refuse_if_busy(run_dir)
        raise


def remove_writer_leftovers(folder: Path, outputs: Sequence[str] = RUN_OUTPUTS) -> None:
    """Under the folder's writer lock: remove what killed writers of its ``outputs``, its marker and its lock holder
    file left (staging folders, temporary files)."""
    for name in (*outputs, MARKER_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX):
        remove_leftovers(folder, name)


STORAGE_CLIENTS: tuple[str, ...] = ("botocore", "aiobotocore", "s3fs", "gcsfs", "adlfs", "aiohttp", "fsspec")
"""Packages whose exceptions say that the storage of a run URL failed (an endpoint gone, a timeout, a refused request)."""


@contextlib.contextmanager
def write_errors(run_dir: Location) -> Iterator[None]:
    """Turn a failed write into :class:`WriteError` (one line, exit code 3): an ``OSError`` (disk full, permissions),
    and for a run URL an error of its storage client (:data:`STORAGE_CLIENTS`: the endpoint gone mid-record)."""
    try:
        yield
    except OSError as exc:
        raise write_failed(exc, f"the run {run_dir}") from exc
    except Exception as exc:
        if not is_remote(run_dir) or type(exc).__module__.split(".")[0] not in STORAGE_CLIENTS:
            raise
        raise write_failed(exc, f"the run {run_dir}") from exc


@contextlib.contextmanager
def locked_run(run_dir: Location) -> Iterator[None]:
    """Hold a local run's writer lock and remove an interrupted writer's leftovers while the block runs.

    A run URL has neither: object stores have no locks (one recorder per URL is up to the user) and
    leave no temporary files (each object is written in one PUT).
    """
    if is_remote(run_dir):
        with write_errors(run_dir):
            yield
        return
    with write_errors(run_dir), writer_lock(run_dir / FOLDER_LOCK_FILENAME, f"run {run_dir}"):
        remove_writer_leftovers(run_dir)
        yield


class Claim:
    """A folder claimed for writing (:func:`claimed_folder`): the writers made in it, and the output they replace.

    The caller appends every :class:`RunWriter` it creates to :attr:`writers` and calls :meth:`replaced`
    once the new stores are in place: only then is what is left of the replaced output deleted, so a
    claim refused or failed before that point leaves the previous output as it was.
    """

    def __init__(self, writers: list[RunWriter] | None = None, drop_previous: Callable[[], None] | None = None) -> None:
        self.writers: list[RunWriter] = [] if writers is None else writers
        self._drop_previous = drop_previous

    def replaced(self) -> None:
        """The new stores are in place: delete what the output they replace left beside them (once; a no-op when
        nothing is replaced)."""
        drop, self._drop_previous = self._drop_previous, None
        if drop is not None:
            drop()


@contextlib.contextmanager
def claimed_folder(folder: Path, kind: str, *, check: Callable[[], None], outputs: Sequence[str],
                   previous: Callable[[contextlib.ExitStack], Callable[[], None]] | None = None,
                   remark: bool = True, **marker: Any) -> Iterator[Claim]:
    """Claim the local ``folder`` for this process as a ``kind`` folder: create it, hold its writer lock, mark it.

    Parameters
    ----------
    folder : Path
    kind : str
        Its marker kind (``"run"``, ``"ensemble"``).
    check : callable
        Raises :class:`OutputError` for a folder this process may not write; called before the folder is made
        (a refusal then names the process that holds the folder's lock) and again under the lock.
    outputs : sequence of str
        The names this claim's writers put into ``folder`` besides the marker and the lock.
    previous : callable, optional
        For a replacement (``--overwrite``): called under the lock before anything changes, it takes into the
        given stack the locks that deleting the previous output needs (refusing at once when one is busy) and
        returns the deletion, which :meth:`Claim.replaced` runs.
    remark : bool
        Mark a folder already marked as ``kind`` again now; False leaves its marker to the writer that replaces its
        store (:meth:`RunWriter.create <actlab.store.RunWriter.create>` marks a run once its store is in place).
    **marker
        Details of the marker (:func:`actlab.files.write_marker`).

    Yields
    ------
    Claim
        When the block fails before any of its writers' first committed epoch, the claim is undone, still under
        the lock: a new folder (and the parents made for it) is removed; in a folder that existed, the
        ``outputs`` are removed when the block made writers (their stores replaced the old ones) and the marker
        is put back as it was. A refused claim changes nothing.
    """
    try:
        check()
    except OutputError:
        refuse_if_busy(folder, kind)
        raise
    created = make_dirs(folder)
    with writer_lock(folder / FOLDER_LOCK_FILENAME, f"{kind} {folder}"), contextlib.ExitStack() as locks:
        check()
        marker_path = folder / MARKER_FILENAME
        old_marker = marker_path.read_bytes() if marker_path.is_file() and not marker_path.is_symlink() else None
        writers: list[RunWriter] = []
        try:
            claim = Claim(writers, previous(locks) if previous is not None else None)
            remove_writer_leftovers(folder, outputs)
            if remark or marker_kind(folder) != kind:
                write_marker(folder, kind, **marker)
            yield claim
        except BaseException:
            if not any(writer.committed_metric_epochs for writer in writers):
                _undo_claim(folder, created, bool(writers), outputs, old_marker)
            raise


def _undo_claim(folder: Path, created: list[Path], made_writers: bool, outputs: Sequence[str],
                old_marker: bytes | None) -> None:
    """Undo a claim that failed before anything was committed (see :func:`claimed_folder`); the lock file stays, since
    deleting a held lock would let a second writer lock a new file of the same name."""
    if created:  # ``folder`` is the innermost: made by this claim and written under its lock
        shutil.rmtree(folder, ignore_errors=True)
        remove_created(created[:-1])  # the parents made for it, only while nothing else came into them
        return
    if made_writers:
        for name in outputs:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    marker = folder / MARKER_FILENAME
    if (marker.read_bytes() if marker.is_file() else None) == old_marker:
        return  # not rewritten yet (a claim refused under the lock): leave the file as it was
    if old_marker is None:
        marker.unlink(missing_ok=True)
    else:
        write_atomic(marker, old_marker)


def previous_outputs(folder: Path, locks: contextlib.ExitStack) -> Callable[[], None]:
    """Prepare the replacement of the run or ensemble in ``folder``: hold its analysis folder's lock, also when it has
    no analysis folder yet (refused at once while an ``analyze`` writes it) and return the deletion of its checkpoint and analysis folder, for after its
    store (an ensemble: its replicas' stores) is replaced (:func:`claimed_folder`)."""
    analysis = folder / ANALYSIS_DIRNAME
    own_analysis = analysis.is_dir() and not analysis.is_symlink() and marker_kind(analysis) == "analysis"
    # held whether or not the analysis folder exists yet: an analysis of the old run still being computed then
    # cannot land in the new one (it is refused at its swap, under this lock)
    locks.enter_context(writer_lock(lock_path(analysis), f"analysis folder {analysis}"))

    def drop() -> None:
        (folder / CHECKPOINT_FILENAME).unlink(missing_ok=True)
        (folder / CHECKPOINT_DIGEST_FILENAME).unlink(missing_ok=True)
        if own_analysis:
            shutil.rmtree(analysis)

    return drop


@contextlib.contextmanager
def claimed_run_dir(run_dir: Location, *, overwrite: bool, run_id: str | None = None) -> Iterator[Claim]:
    """Claim the run folder for this process (:func:`claimed_folder` with the kind ``run``).

    With ``overwrite``, a run already there is replaced: its store by the new one when the caller creates
    it, its checkpoint and analysis folder when the caller then calls :meth:`Claim.replaced`. The marker names
    ``run_id``, the run id of the store the caller creates (:func:`check_own_run`). A run URL is
    claimed by :func:`actlab.remote.claimed_remote_run` instead (no lock, no marker, no replacement).
    """
    if is_remote(run_dir):
        with claimed_remote_run(run_dir, overwrite=overwrite) as writers:
            yield Claim(writers)
        return
    with claimed_folder(run_dir, "run", check=lambda: check_run_output(run_dir, overwrite=overwrite), outputs=RUN_OUTPUTS,
                        previous=functools.partial(previous_outputs, run_dir) if overwrite else None, remark=False,
                        **({"run_id": run_id} if run_id else {})) as claim:
        yield claim
