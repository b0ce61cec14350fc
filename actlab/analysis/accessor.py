"""The ``.actlab`` accessor namespace on xarray objects: the composable analyses as methods.

Importing :mod:`actlab.analysis` registers it::

    act = run.layer("hidden1")
    act.actlab.signal_separation()
    run.metrics.actlab.double_descent()
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from actlab.analysis import curves, large_activation, paths, separation
from actlab.analysis.pca import PCA, pca_trajectories


@xr.register_dataarray_accessor("actlab")
class ActlabDataArrayAccessor:
    """Analyses of an activation DataArray (epoch, sample, unit), a curve (epoch,) or per-sample values (sample,)."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def class_means(self, n_classes: int | None = None) -> xr.DataArray:
        """(epoch, sample, unit) -> (epoch, grouping, class, unit); see :func:`separation.class_means`."""
        return separation.class_means(self._obj, n_classes)

    def signal_separation(self, n_classes: int | None = None) -> xr.Dataset:
        """(epoch, sample, unit) -> Dataset (epoch, class); see :func:`separation.signal_separation`."""
        return separation.signal_separation(self._obj, n_classes)

    def pca(self, n_components: int = 10) -> PCA:
        """A :class:`PCA` fitted on all epochs and samples."""
        return PCA(n_components).fit(self._obj)

    def pca_trajectories(self, n_components: int = 10, n_classes: int | None = None) -> xr.DataArray:
        """(epoch, sample, unit) -> (grouping, epoch, class, component) class-mean trajectories."""
        return pca_trajectories(self.pca(n_components), separation.class_means(self._obj, n_classes).compute())

    def unit_magnitudes(self) -> xr.Dataset:
        """(epoch, sample, unit) -> Dataset (epoch, unit) of mean and max |activation|."""
        return large_activation.unit_magnitudes(self._obj)

    def dominant_unit(self, **kwargs: Any) -> xr.Dataset:
        """(epoch, sample, unit) -> dominant-unit detection; see :func:`large_activation.dominant_unit`."""
        return large_activation.dominant_unit(large_activation.unit_magnitudes(self._obj).compute(), **kwargs)

    def explain_unit(self, probes: xr.Dataset, predicted: xr.DataArray | None = None, **kwargs: Any) -> xr.Dataset:
        """(sample,) magnitudes -> input vs output explanation; see :func:`large_activation.explain_unit`."""
        return large_activation.explain_unit(self._obj, probes, predicted, **kwargs)

    def predictions(self) -> xr.DataArray:
        """Output layer (epoch, sample, unit) -> predicted class (epoch, sample)."""
        return paths.predictions(self._obj)

    def path_attribution(self, predicted: xr.DataArray, relevant: str = "predicted") -> xr.Dataset:
        """(epoch, sample, unit) -> clean/noisy path attribution of the test probes."""
        return paths.path_attribution(self._obj, predicted, relevant)

    def double_descent(self, **kwargs: Any) -> xr.Dataset:
        """Curve (epoch,) -> double-descent detection; see :func:`curves.double_descent`."""
        return curves.double_descent(self._obj, **kwargs)


@xr.register_dataset_accessor("actlab")
class ActlabDatasetAccessor:
    """Analyses of a metrics Dataset (epoch,) or a magnitudes Dataset (epoch, unit)."""

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    def learning_curves(self, **kwargs: Any) -> xr.Dataset:
        """Metrics (epoch,) -> phases and double descent; see :func:`curves.learning_curves`."""
        return curves.learning_curves(self._obj, **kwargs)

    def learning_phases(self, **kwargs: Any) -> xr.Dataset:
        """Metrics (epoch,) -> epochs of clean learning and noisy memorisation."""
        return curves.learning_phases(self._obj, **kwargs)

    def double_descent(self, variable: str = "test_loss", **kwargs: Any) -> xr.Dataset:
        """Metrics (epoch,) -> double descent of ``variable`` (``test_error`` = 1 - test_acc)."""
        curve = 1 - self._obj["test_acc"] if variable == "test_error" else self._obj[variable]
        return curves.double_descent(curve.rename(variable), **kwargs)

    def dominant_unit(self, **kwargs: Any) -> xr.Dataset:
        """Magnitudes (epoch, unit) -> dominant-unit detection."""
        return large_activation.dominant_unit(self._obj, **kwargs)
