"""Progress that a user can see: a tqdm bar on a terminal or in Jupyter, plain lines in a pipe or a log."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

LINE_INTERVAL_SECONDS = 5.0
"""Where stderr is not a terminal, a progress line is printed at most this often (and at the end)."""


def _on_terminal(stream: TextIO) -> bool:
    """Whether a bar can be drawn: ``stream`` is a terminal, or stderr inside a Jupyter kernel."""
    return stream.isatty() or (stream is sys.stderr and _in_jupyter())


def _in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


def _bar_class() -> type[tqdm]:
    """The notebook bar inside a Jupyter kernel with ipywidgets, else the text bar (tqdm.auto would warn where
    ipywidgets is missing)."""
    if _in_jupyter():
        try:
            import ipywidgets  # noqa: F401  (the notebook bar draws with it)
            from tqdm.notebook import tqdm as notebook_tqdm
        except ImportError:
            return tqdm
        return notebook_tqdm
    return tqdm


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Show the progress of ``total`` steps.

    On a terminal (or in Jupyter) it is a tqdm bar. Elsewhere, where a bar would be one endless line
    of carriage returns, it prints one line at most every ``interval`` seconds and one at the end:
    ``desc: epoch 40/100 (40%), test=0.912, 0m12s elapsed, 0m18s left``.

    Parameters
    ----------
    total : int
        Number of steps.
    desc : str
        What is progressing (the run's name, ``analyze``).
    unit : str
        Name of one step (``epoch``, ``block``).
    initial : int
        Steps already done (a resumed run).
    enabled : bool
        False shows nothing.
    interval : float
        Seconds between plain lines.
    stream : text stream
        Where to show it (default stderr).
    """

    def __init__(self, total: int, *, desc: str, unit: str, initial: int = 0, enabled: bool = True,
                 interval: float = LINE_INTERVAL_SECONDS, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.done = int(total), desc, unit, int(initial)
        self.enabled, self.interval = enabled, interval
        self.stream = stream if stream is not None else sys.stderr
        self._start = self._last_line = time.monotonic()
        self._initial = self.done
        self._postfix: dict[str, Any] = {}
        self._bar = None
        if enabled and _on_terminal(self.stream):
            self._bar = _bar_class()(total=self.total, initial=self.done, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)

    def update(self, steps: int = 1, **postfix: Any) -> None:
        """Count ``steps`` more done; ``postfix`` values (already formatted or numbers) are shown beside."""
        self.done += steps
        self._postfix.update(postfix)
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=False)
            self._bar.update(steps)
        elif self.enabled and (time.monotonic() - self._last_line >= self.interval or self.done >= self.total):
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        elapsed, run = now - self._start, self.done - self._initial
        left = elapsed / run * (self.total - self.done) if run > 0 else float("nan")
        parts = [f"{self.unit} {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%)"]
        parts += [f"{key}={value}" for key, value in self._postfix.items()]
        parts.append(f"{_duration(elapsed)} elapsed")
        if self.done < self.total and left == left:
            parts.append(f"{_duration(left)} left")
        print(f"{self.desc}: " + ", ".join(parts), file=self.stream, flush=True)
        self._last_line = now

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the bar; without a bar, say where an unfinished count stopped."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done < self.total:
            self._line()
