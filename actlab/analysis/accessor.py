"""The ``.actlab`` accessor namespace on xarray objects: the composable analyses as methods.

Importing :mod:`actlab.analysis` registers it::

    act = run.layer("hidden1")
    act.actlab.signal_separation()
    run.metrics.actlab.double_descent()
    found = run.dynamics.actlab.sample_dynamics()          # every training sample's trajectory
    memorised = act.actlab.memorised_epochs(found["learned_epoch"])
    act.actlab.memorisation_split(memorised, run.layer("output").actlab.predictions())

Every default is the one :func:`actlab.analysis.analyze` uses (the constants of the analysis modules), so the
accessor and the fused pass give the same answers.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from actlab.analysis import curves, dynamics, large_activation, memorisation, paths, separation
from actlab.analysis.blocks import SEED, check_activations
from actlab.analysis.pca import N_COMPONENTS, PCA, PCA_EPOCHS, pca_epoch_indices, pca_trajectories


@xr.register_dataarray_accessor("actlab")
class ActlabDataArrayAccessor:
    """Analyses of an activation DataArray (epoch, sample, unit), a curve (epoch,) or per-sample values (sample,)."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def class_means(self, n_classes: int | None = None) -> xr.DataArray:
        """(epoch, sample, unit) -> (epoch, grouping, class, unit); see :func:`separation.class_means`."""
        return separation.class_means(self._obj, n_classes)

    def signal_separation(self, n_classes: int | None = None, seed: int = SEED) -> xr.Dataset:
        """(epoch, sample, unit) -> Dataset (epoch, class) with noise floor; see :func:`separation.signal_separation`."""
        return separation.signal_separation(self._obj, n_classes, seed)

    def pca(self, n_components: int = N_COMPONENTS, pca_epochs: int | None = PCA_EPOCHS) -> PCA:
        """A :class:`PCA` fitted on all samples of ``pca_epochs`` evenly spaced epochs (:func:`pca_epoch_indices`)."""
        act = check_activations(self._obj)
        return PCA(n_components).fit(act.isel(epoch=pca_epoch_indices(act.sizes["epoch"], pca_epochs)))

    def pca_trajectories(self, n_components: int = N_COMPONENTS, n_classes: int | None = None,
                         pca_epochs: int | None = PCA_EPOCHS) -> xr.DataArray:
        """(epoch, sample, unit) -> (grouping, epoch, class, component) class-mean trajectories (every epoch)."""
        return pca_trajectories(self.pca(n_components, pca_epochs), separation.class_means(self._obj, n_classes).compute())

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

    def path_attribution(self, predicted: xr.DataArray, relevant: str = paths.RELEVANT[0]) -> xr.Dataset:
        """(epoch, sample, unit) -> clean/noisy path attribution of the test probes."""
        return paths.path_attribution(self._obj, predicted, relevant)

    def memorised_epochs(self, learned: xr.DataArray) -> xr.DataArray:
        """Probe coords (sample,) + learned epochs (train_sample,) -> the epoch each noisy probe's label is memorised
        (sample,); see :func:`memorisation.probe_memorised_epochs`."""
        return memorisation.probe_memorised_epochs(self._obj, learned)

    def memorisation_split(self, memorised_epoch: xr.DataArray, predicted: xr.DataArray,
                           n_permutations: int = memorisation.N_PERMUTATIONS, seed: int = memorisation.SEED) -> xr.Dataset:
        """(epoch, sample, unit) -> Dataset (epoch,): separation and path split of the noisy probes memorised early
        against late, with the permutation null; see :func:`memorisation.memorisation_split`."""
        return memorisation.memorisation_split(self._obj, memorised_epoch, predicted, n_permutations=n_permutations,
                                               seed=seed)

    def learned_epoch(self) -> xr.DataArray:
        """Correct (epoch, train_sample) -> first epoch from which each sample stays correct (train_sample,)."""
        return dynamics.learned_epoch(self._obj)

    def forgetting_events(self) -> xr.DataArray:
        """Correct (epoch, train_sample) -> forgetting events of each sample (train_sample,)."""
        return dynamics.forgetting_events(self._obj)

    def cartography(self) -> xr.Dataset:
        """Loss (epoch, train_sample) -> confidence and variability (train_sample,); select the training epochs first."""
        return dynamics.cartography(self._obj)

    def area_under_margin(self) -> xr.DataArray:
        """Margin (epoch, train_sample) -> area under the margin (train_sample,); select the training epochs first."""
        return dynamics.area_under_margin(self._obj)

    def double_descent(self, **kwargs: Any) -> xr.Dataset:
        """Curve (epoch,) -> double-descent detection; see :func:`curves.double_descent`.

        A bare curve carries no training accuracies: pass ``unstable=`` for criterion 5, or call
        ``metrics.actlab.double_descent()`` on the metrics Dataset, which does.
        """
        return curves.double_descent(self._obj, **kwargs)


@xr.register_dataset_accessor("actlab")
class ActlabDatasetAccessor:
    """Analyses of a metrics Dataset (epoch,), a magnitudes Dataset (epoch, unit) or the trajectories (epoch, train_sample)."""

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    def learning_curves(self, **kwargs: Any) -> xr.Dataset:
        """Metrics (epoch,) -> phases and double descent; see :func:`curves.learning_curves`."""
        return curves.learning_curves(self._obj, **kwargs)

    def learning_phases(self, **kwargs: Any) -> xr.Dataset:
        """Metrics (epoch,) -> epochs of clean learning and noisy memorisation."""
        return curves.learning_phases(self._obj, **kwargs)

    def double_descent(self, variable: str = "test_loss", instability_drop: float = curves.INSTABILITY_DROP,
                       **kwargs: Any) -> xr.Dataset:
        """Metrics (epoch,) -> double descent of ``variable`` (``test_error`` = 1 - test_acc), all five criteria.

        Criterion 5 reads :func:`curves.training_instabilities` of these metrics, as :func:`curves.learning_curves`.
        """
        curve = 1 - self._obj["test_acc"] if variable == "test_error" else self._obj[variable]
        unstable = curves.training_instabilities(self._obj, drop=instability_drop)
        return curves.double_descent(curve.rename(variable), unstable=unstable, **kwargs)

    def dominant_unit(self, **kwargs: Any) -> xr.Dataset:
        """Magnitudes (epoch, unit) -> dominant-unit detection."""
        return large_activation.dominant_unit(self._obj, **kwargs)

    def sample_dynamics(self, n_permutations: int = dynamics.N_PERMUTATIONS, n_top: int = dynamics.N_TOP,
                        seed: int = dynamics.SEED) -> xr.Dataset:
        """Trajectories (epoch, train_sample) (``run.dynamics``) -> learned epochs, forgetting, cartography and the
        mislabel ranking, as node ``dynamics``; see :func:`dynamics.sample_dynamics`."""
        return dynamics.sample_dynamics(self._obj, n_permutations=n_permutations, n_top=n_top, seed=seed)

    def training_epochs(self) -> xr.Dataset:
        """Trajectories (epoch, train_sample) -> the same after the initialisation (what the map and margin average)."""
        return dynamics.training_epochs(self._obj)
