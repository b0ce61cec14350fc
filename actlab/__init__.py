"""actlab: record activations of training runs into Zarr stores once, analyse them offline.

The two halves meet only at the run store (:mod:`actlab.store`):

- ``actlab.record`` (needs torch) trains a model and writes the store;
- ``actlab.analysis`` (xarray, dask, scikit-learn; never torch) reads it.

``import actlab`` imports neither half; ``actlab.record`` and ``actlab.open_run``
are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Recorder", "__version__", "open_run", "record"]


def __getattr__(name: str) -> Any:
    if name == "open_run":
        from actlab.analysis import open_run

        return open_run
    if name == "record":
        from actlab.record import record

        return record
    if name == "Recorder":
        from actlab.record.recorder import Recorder

        return Recorder
    raise AttributeError(f"module 'actlab' has no attribute {name!r}")
