"""Output folders at URLs: the part of :mod:`actlab.files`'s safety that object stores allow.

Object stores have no rename and no locks, so an output at a URL (``actlab analyze RUN --out s3://...``,
a run's own ``RUN/analysis`` when RUN is a URL, ``actlab compare --out s3://...``) is handled like this:

- it is built whole in a local temporary folder first (through :func:`actlab.files.staged_dir`, so the
  analysis itself never touches the URL), and only then published;
- publishing refuses a prefix that holds anything but an actlab output of the same kind (its marker
  object, :data:`~actlab.files.MARKER_FILENAME`, says so) and a prefix inside or around an input run;
- it deletes the previous output's :data:`LAST` files first, then the rest of the previous output, then
  uploads the marker, every other file, and :data:`LAST` in order: each object is one atomic PUT, and
  ``report.html`` present means the output beside it is complete;
- one writer at a time is NOT enforced (no lock exists); two commands publishing to the same prefix at
  once leave a mix, which is why the report is written last and removed first.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from actlab.digest import digest_problem
from actlab.errors import OutputError
from actlab.files import KINDS, MARKER_FILENAME, check_output, staged_dir
from actlab.location import Location, files, is_remote

LAST: tuple[str, ...] = ("summary.json", "report.html")
"""Files published last, in this order (and removed first): their presence means the output is complete."""


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_remote_output(target: str, kind: str, *, inputs: Iterable[Location] = (), allowed_inside: Iterable[Location] = (),
                        flag: str = "--out") -> None:
    """Refuse an output URL that actlab may not write (the URL counterpart of :func:`actlab.files.check_output`).

    Raises
    ------
    OutputError
        ``target`` lies inside or contains an input run URL (other than ``allowed_inside``), or holds
        objects that are not an actlab output of ``kind``.
    """
    allowed = {str(p) for p in allowed_inside if is_remote(p)}
    for source in (str(p) for p in inputs if is_remote(p) and target not in allowed):
        if _within(target, source):
            raise OutputError(f"{flag} {target} lies inside the input run {source}; choose a prefix outside it "
                              f"(the run's own analysis goes to {source}/analysis by default)")
        if _within(source, target):
            raise OutputError(f"{flag} {target} contains the input run {source}; choose a new prefix that holds no input run")
    out = files(target)
    keys = out.keys()
    if not keys:
        return
    try:
        marker = json.loads(out.read(MARKER_FILENAME)) if MARKER_FILENAME in keys else {}
        found = marker.get("kind")
    except (OSError, ValueError, AttributeError):
        marker, found = {}, None
    if found is not None and digest_problem(marker):
        raise OutputError(f"{flag} {target}: its marker {MARKER_FILENAME} {digest_problem(marker)}; actlab does not act "
                          "on it: choose a new or empty prefix")
    if found != kind:
        what = f"an actlab {found} folder" if found in KINDS else "objects actlab did not write"
        raise OutputError(f"{flag} {target} holds {what}; choose a new or empty prefix")


def check_any_output(target: Location, kind: str, *, inputs: Iterable[Location] = (),
                     allowed_inside: Iterable[Location] = ()) -> None:
    """:func:`actlab.files.check_output` for a local ``target``, :func:`check_remote_output` for a URL.

    ``target``, ``inputs`` and ``allowed_inside`` are locations (:func:`actlab.location.location`). Inputs of the
    other kind (URL inputs of a local output and vice versa) cannot overlap it and are skipped.
    """
    inputs, allowed_inside = list(inputs), list(allowed_inside)
    if is_remote(target):
        check_remote_output(target, kind, inputs=inputs, allowed_inside=allowed_inside)
    else:
        check_output(target, kind, inputs=[p for p in inputs if not is_remote(p)],
                     allowed_inside=[p for p in allowed_inside if not is_remote(p)])


def publish(built: Path, target: str, kind: str, **guard: Iterable[Location]) -> None:
    """Upload the finished local folder ``built`` to the URL ``target``, replacing an earlier output of ``kind``.

    Order: check again, remove the old :data:`LAST` files, then the old rest, upload the marker, the other
    files, then :data:`LAST` (see the module docstring).
    """
    check_remote_output(target, kind, **guard)
    out = files(target)
    old = out.keys()
    for key in (k for k in LAST if k in old):
        out.fs.rm_file(out.path(key))
    rest = [out.path(k) for k in old if k not in (*LAST, MARKER_FILENAME)]
    if rest:
        out.fs.rm(rest)
    if MARKER_FILENAME in old:
        out.fs.rm_file(out.path(MARKER_FILENAME))
    new = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    order = [MARKER_FILENAME] + [k for k in new if k not in (*LAST, MARKER_FILENAME)] + [k for k in LAST if k in new]
    for key in order:
        out.fs.put_file(str(built / key), out.path(key))


@contextlib.contextmanager
def staged_output(target: Location, kind: str, *, inputs: Iterable[Location] = (),
                  allowed_inside: Iterable[Location] = ()) -> Iterator[Path]:
    """Yield a local folder to build the output ``target`` in; put it in place when the block succeeds.

    A local ``target`` goes through :func:`actlab.files.staged_dir` (atomic swap under the writer lock);
    a URL is built in a local temporary folder and then published with :func:`publish`.
    """
    inputs, allowed_inside = list(inputs), list(allowed_inside)
    if not is_remote(target):
        with staged_dir(target, kind, inputs=[p for p in inputs if not is_remote(p)],
                        allowed_inside=[p for p in allowed_inside if not is_remote(p)]) as built:
            yield built
        return
    guard = {"inputs": inputs, "allowed_inside": allowed_inside}
    check_remote_output(target, kind, **guard)
    with tempfile.TemporaryDirectory(prefix="actlab-publish-") as tmp:
        with staged_dir(Path(tmp) / "out", kind) as built:
            yield built
        publish(Path(tmp) / "out", target, kind, **guard)


# -- runs at URLs -------------------------------------------------------------------------------------------


def check_remote_run(run: str, *, overwrite: bool) -> None:
    """Refuse a run URL that ``actlab record`` may not write: ``--overwrite``, or a prefix that holds anything.

    An object store cannot swap a run in one step, so an existing run is never replaced; continue it
    with ``--resume`` or delete it first.

    Raises
    ------
    OutputError
    """
    from actlab.store import STORE_DIRNAME

    if overwrite:
        raise OutputError(f"--overwrite is not available for a URL ({run}): an object store cannot replace a run in one "
                          "step; delete the old run's prefix first, or choose a new --out")
    keys = files(run).keys()
    if any(key.startswith(f"{STORE_DIRNAME}/") for key in keys):
        raise OutputError(f"{run} already holds a run; continue it with 'actlab record --resume {run}', "
                          "or delete its prefix, or choose a new --out")
    if keys:
        raise OutputError(f"--out {run} holds objects actlab did not write; choose a new or empty prefix")


@contextlib.contextmanager
def claimed_remote_run(run: str, *, overwrite: bool) -> Iterator[list]:
    """The URL counterpart of :func:`actlab.record.claim.claimed_run_dir`: check the prefix, yield a writer list.

    No lock and no marker exist at a URL; the store's root status (``"creating"``, then ``"recording"``)
    says what state it is in. When the block fails before the run's first committed epoch, the objects its
    writers wrote are deleted again, and only those: another recorder that passed the same check at the same
    moment keeps its own (a store that fails while being allocated deletes its objects itself).
    """
    check_remote_run(run, overwrite=overwrite)
    writers: list = []
    try:
        yield writers
    except BaseException:
        if not any(writer.committed_metric_epochs for writer in writers):
            for writer in writers:
                writer.delete_written()
        raise
