"""Where the analysis computes: ``--scheduler`` values and the local dask.distributed cluster of ``local:N``.

- no value: local threads of this process;
- ``tcp://HOST:PORT`` (or ``tls://``, ``ws://``, ``wss://``, ``ucx://``): a running dask.distributed scheduler;
  its workers must reach the run at the same path or URL;
- ``local:N``: a cluster of N worker processes (one thread each) on this machine, started for the duration of
  the command and closed after (:func:`scheduler_address`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from actlab.errors import ConfigError

PROTOCOLS: tuple[str, ...] = ("tcp", "tls", "ws", "wss", "ucx")
"""Address protocols of a running dask.distributed scheduler."""

_ADDRESS = re.compile(rf"^({'|'.join(PROTOCOLS)})://[^\s/:]+(:\d+)?/?$")
_LOCAL = re.compile(r"^local:(\d+)$")


def check_scheduler(value: str | None) -> str | None:
    """Validate a ``--scheduler`` value; return it unchanged.

    Raises
    ------
    ConfigError
        Neither None, a scheduler address (``tcp://HOST:PORT``) nor ``local:N`` with N >= 1.
    """
    if value is None or _ADDRESS.match(value):
        return value
    match = _LOCAL.match(value)
    if match and int(match.group(1)) >= 1:
        return value
    raise ConfigError(f"--scheduler {value!r} is neither a scheduler address nor local:N; give e.g. tcp://10.0.0.5:8786, "
                      "or local:4 for a local cluster of 4 worker processes")


@contextlib.contextmanager
def scheduler_address(value: str | None, *, memory_limit: str | float | None = "auto") -> Iterator[str | None]:
    """The scheduler address to hand :func:`actlab.analysis.analyze` while the block runs.

    For ``local:N`` a :class:`distributed.LocalCluster` of N worker processes with one thread each (no
    dashboard) is started and closed again when the block exits; other values are passed through.

    Parameters
    ----------
    value : str or None
        A ``--scheduler`` value (validated with :func:`check_scheduler`).
    memory_limit : str or float or None
        Memory limit per worker of a local cluster (dask's ``"auto"``: the machine's memory split evenly).

    Yields
    ------
    str or None
    """
    check_scheduler(value)
    match = _LOCAL.match(value or "")
    if not match:
        yield value
        return
    try:
        from distributed import LocalCluster
    except ImportError as exc:
        raise ConfigError("--scheduler local:N needs dask.distributed, which is not installed; run `pip install distributed`") from exc
    with LocalCluster(n_workers=int(match.group(1)), threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=memory_limit) as cluster:
        yield cluster.scheduler_address
