"""Store writes off the training critical path: one background thread, a small bounded queue, in order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from actlab.errors import ActlabError
from actlab.files import write_failed


class BackgroundWriter:
    """Run write tasks (``RunWriter.write_metrics``, ``write_epoch``, checkpoint saves) in submission order on a thread.

    The queue holds at most ``maxsize`` pending tasks, so training blocks
    rather than piling up recorded epochs in memory. The first exception of a
    task stops the writer for good: no later task runs (queued ones are
    dropped), and every later :meth:`submit`, :meth:`flush` or :meth:`close`
    raises that first error in the training thread (an ``OSError`` as
    :class:`~actlab.errors.WriteError`, exit code 3). Whatever was committed
    before it stays readable.

    Parameters
    ----------
    maxsize : int
        Pending tasks before :meth:`submit` blocks.
    """

    def __init__(self, maxsize: int = 2) -> None:
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="actlab-store-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is None:
                    return
                if self._error is None:
                    func, args = task
                    func(*args)
            except BaseException as exc:  # handed to the training thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, ActlabError):
            raise error
        if isinstance(error, OSError):
            raise write_failed(error, "the run") from error
        raise error

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        """Queue ``func(*args)``; raises the error of an earlier task if one failed."""
        self._raise()
        if not self._thread.is_alive():
            raise RuntimeError("the background writer is closed")
        self._queue.put((func, args))

    def flush(self) -> None:
        """Wait until every queued task has run; raise the first task error."""
        self._queue.join()
        self._raise()

    def close(self, *, raise_errors: bool = True) -> None:
        """Finish the queued tasks and stop the thread; raise the first task error (unless told not to)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if raise_errors:
            self._raise()
