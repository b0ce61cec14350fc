"""PCA of pooled activations (exact, out of core) and class-mean trajectories on its components."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import xarray as xr

from actlab.analysis import blocks
from actlab.analysis.blocks import Moments

N_COMPONENTS = 10
PCA_EPOCHS = 16
"""Defaults shared by the accessor and :func:`actlab.analysis.analyze`: components kept, epochs fitted on."""


def pca_epoch_indices(n_epochs: int, pca_epochs: int | None = PCA_EPOCHS) -> np.ndarray:
    """Indices of the recorded epochs the PCA is fitted on: ``pca_epochs`` evenly spaced ones, first and last included.

    ``None`` (or a number at least ``n_epochs``) selects every epoch.
    """
    if pca_epochs is None or pca_epochs >= n_epochs:
        return np.arange(n_epochs)
    return np.unique(np.round(np.linspace(0, n_epochs - 1, pca_epochs)).astype(int))


class PCA:
    """Exact PCA of (sample, unit) data streamed block by block, scikit-learn style.

    The mean and centred scatter matrix are accumulated per block and merged
    exactly (:class:`~actlab.analysis.blocks.Moments`); ``scipy.linalg.eigh``
    of the covariance (its ``n_components`` leading eigenpairs only) gives the components. Signs follow scikit-learn: the
    largest-magnitude loading of each component is positive.

    Parameters
    ----------
    n_components : int
        Number of leading components kept (capped at the number of units).

    Attributes
    ----------
    mean_ : xr.DataArray (unit,)
    components_ : xr.DataArray (component, unit)
    explained_variance_ : xr.DataArray (component,)
        Eigenvalues of the covariance with denominator n - 1.
    explained_variance_ratio_ : xr.DataArray (component,)
        Fraction of the total variance.
    n_samples_seen_ : int
    moments_ : Moments
        The accumulated statistics.
    """

    def __init__(self, n_components: int = N_COMPONENTS) -> None:
        self.n_components = n_components

    def partial_fit(self, block: np.ndarray | xr.DataArray) -> PCA:
        """Add one (sample, unit) block and refit the components from all blocks so far."""
        values = block.transpose("sample", "unit").values if isinstance(block, xr.DataArray) else np.asarray(block)
        if values.ndim != 2:
            raise ValueError(f"partial_fit expects a (sample, unit) block; got shape {values.shape}")
        units = block["unit"].values if isinstance(block, xr.DataArray) and "unit" in block.coords else None
        moments = Moments.from_block(values)
        if hasattr(self, "moments_"):
            moments = self.moments_ + moments
        return self.fit_moments(moments, unit=units)

    def fit(self, act: xr.DataArray) -> PCA:
        """Fit on all epochs and samples of activations (epoch, sample, unit), one epoch chunk at a time."""
        act = blocks.check_activations(act)
        moments = Moments(0, np.zeros(act.sizes["unit"]), np.zeros((act.sizes["unit"],) * 2))
        for block in act.data.to_delayed().ravel():
            moments = moments + Moments.from_block(block.compute()[0])
        return self.fit_moments(moments, unit=act["unit"].values)

    def fit_moments(self, moments: Moments, unit: np.ndarray | None = None) -> PCA:
        """Fit from accumulated :class:`Moments` (what :meth:`fit` and the fused pipeline do)."""
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer; got {self.n_components!r}")
        if moments.n < 2:
            raise ValueError(f"PCA needs at least 2 samples; got {moments.n}")
        n_units = len(moments.mean)
        unit = np.arange(n_units) if unit is None else unit
        k = min(int(self.n_components), n_units)
        # one (unit, unit) array: the symmetrised covariance, overwritten by the eigensolver, which returns the k
        # leading eigenvectors only (a 4,096-unit layer: 134 MB, not a full eigenvector matrix and its workspace)
        covariance = moments.scatter.copy()
        covariance += moments.scatter.T
        covariance *= 0.5 / (moments.n - 1)
        total = float(np.trace(covariance))
        eigenvalues, eigenvectors = scipy.linalg.eigh(covariance, subset_by_index=[n_units - k, n_units - 1],
                                                     overwrite_a=True, check_finite=False)
        del covariance
        order = np.argsort(eigenvalues)[::-1]
        values = np.clip(eigenvalues[order], 0.0, None)
        vectors = np.ascontiguousarray(eigenvectors[:, order].T)
        signs = np.sign(vectors[np.arange(k), np.argmax(np.abs(vectors), axis=1)])
        vectors *= np.where(signs == 0, 1.0, signs)[:, None]
        component = np.arange(k)
        self.moments_ = moments
        self.n_samples_seen_ = int(moments.n)
        self.mean_ = xr.DataArray(moments.mean, dims="unit", coords={"unit": unit},
                                  attrs={"long_name": "mean activation of the pooled samples", "units": "1"})
        self.components_ = xr.DataArray(vectors, dims=("component", "unit"), coords={"component": component, "unit": unit},
                                        attrs={"long_name": "principal axes (unit vectors)", "units": "1"})
        self.explained_variance_ = xr.DataArray(values, dims="component", coords={"component": component},
                                                attrs={"long_name": "variance along each component", "units": "1"})
        ratio = values / total if total > 0 else np.full(k, np.nan)
        self.explained_variance_ratio_ = xr.DataArray(ratio, dims="component", coords={"component": component},
                                                      attrs={"long_name": "fraction of total variance", "units": "1"})
        return self

    def transform(self, x: xr.DataArray) -> xr.DataArray:
        """Project ``x`` (any dims including ``unit``) on the components; ``unit`` becomes ``component``."""
        if not hasattr(self, "components_"):
            raise ValueError("this PCA is not fitted yet; call fit(act) first")
        if "unit" not in x.dims:
            raise ValueError(f"transform expects a 'unit' dim; got dims {x.dims}")
        if x.sizes["unit"] != self.components_.sizes["unit"]:
            raise ValueError(f"expected {self.components_.sizes['unit']} units; got {x.sizes['unit']}")
        centred = x - self.mean_.values
        out = xr.dot(centred, xr.DataArray(self.components_.values, dims=("component", "unit")), dim="unit")
        return out.assign_coords(component=self.components_["component"].values).assign_attrs(
            long_name="projection on principal components", units="1")


def pca_trajectories(pca: PCA, means: xr.DataArray) -> xr.DataArray:
    """Class-mean trajectories on the principal components.

    Parameters
    ----------
    pca : PCA, fitted
    means : xr.DataArray, dims (epoch, grouping, class, unit)
        From :func:`actlab.analysis.separation.class_means`.

    Returns
    -------
    xr.DataArray, dims (grouping, epoch, class, component)
    """
    projected = pca.transform(means.drop_vars("count", errors="ignore"))
    return projected.transpose("grouping", "epoch", "class", "component").rename("trajectory").assign_attrs(
        long_name="class mean projected on the principal components (centred by the pooled mean)", units="1")
