"""actlab: record activations of training runs into Zarr stores once, analyse them offline.

The two halves meet only at the run store (:mod:`actlab.store`):

- ``actlab.record`` (needs torch) trains a model and writes the store;
- ``actlab.analysis`` (xarray, dask, scikit-learn; never torch) reads it.

``import actlab`` imports neither half; ``actlab.record`` and ``actlab.open_run``
are loaded on first use. Where a dependency is missing (a clone used before ``pip install -e .``), that
first use raises ``ModuleNotFoundError`` with one line naming the module and the pip command
(:func:`missing_dependency`); the command line prints it and exits 2.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Recorder", "__version__", "missing_dependency", "open_run", "record"]

# The extra of pyproject.toml that installs each optional dependency; the others come with ``pip install actlab``.
_EXTRAS = {"torch": "record", "torchvision": "record", "lightning": "lightning", "distributed": "distributed",
           "s3fs": "remote", "zarrs": "fast"}


def missing_dependency(exc: BaseException) -> str | None:
    """The one-line message for a dependency of actlab that is not installed, or None when ``exc`` is about none.

    Parameters
    ----------
    exc
        An exception raised by an import; only a ``ModuleNotFoundError`` whose ``name`` is outside actlab counts.

    Returns
    -------
    str or None
        ``"actlab needs the module 'xarray', which is not installed for /path/python; ..."`` followed by the pip
        command: in a clone (a ``pyproject.toml`` beside the package folder), ``pip install -e .`` run in the clone's
        absolute path, or ``pip install -e '.[record]'`` for an optional module (its extra); otherwise
        ``pip install actlab`` (``'actlab[record]'``).
    """
    import sys
    from pathlib import Path

    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    top = (name or "").partition(".")[0]
    if not top or top == "actlab":
        return None
    extra = _EXTRAS.get(top)
    clone = Path(__file__).resolve().parents[1]
    if (clone / "pyproject.toml").is_file():
        how = f"in the clone {clone}, run pip install -e " + (f"'.[{extra}]'" if extra else ".")
    else:
        how = "run pip install " + (f"'actlab[{extra}]'" if extra else "actlab")
    return f"actlab needs the module {top!r}, which is not installed for {sys.executable}; {how}"


def _explained(exc: ModuleNotFoundError) -> ModuleNotFoundError:
    """``exc`` with :func:`missing_dependency`'s line as its message (its ``name`` kept), or ``exc`` itself."""
    message = missing_dependency(exc)
    return exc if message is None else ModuleNotFoundError(message, name=exc.name)


def __getattr__(name: str) -> Any:
    try:
        if name == "open_run":
            from actlab.analysis import open_run

            return open_run
        if name == "record":
            from actlab.record import record

            return record
        if name == "Recorder":
            from actlab.record.recorder import Recorder

            return Recorder
    except ModuleNotFoundError as exc:
        raise _explained(exc) from exc
    raise AttributeError(f"module 'actlab' has no attribute {name!r}")
