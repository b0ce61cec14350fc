"""Opening a recorded run for analysis: :func:`open_run` and :class:`Run`."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize

from actlab.analysis import allocator
from actlab.errors import StoreError
from actlab.location import Location, files, is_remote, location, zarr_store
from actlab.store import (
    StoreView,
    committed_state_digest,
    damage_error,
    damaged_chunks,
    digest_mismatch,
    exception_line,
    file_shard_digest,
    for_reading,
    inner_chunks,
    layer_array_name,
    layer_shard_digests,
    open_store,
    read_attrs,
    read_slot,
    recorded_run_id,
    replaced_error,
    store_folder_id,
    store_identity,
    store_location,
)

KINDS = ("post", "pre")
PROBE_COORDS = ("group", "label", "original_label", "is_noisy", "dataset_index")


def _open_preact(run_dir: Location, layer: str) -> zarr.Array:
    store = zarr_store(store_location(run_dir), read_only=True)
    return for_reading(zarr.open_array(store, path=f"layers/{layer}/preact", mode="r", zarr_format=3))


@functools.lru_cache(maxsize=256)
def _opened_preact(run_dir: Location, layer: str, opened: str) -> zarr.Array:
    """The layer's pre-activation array, opened once per process for each opening of the run (``opened``), so a
    run replaced on disk since is never read through metadata of the old one."""
    return _open_preact(run_dir, layer)


def read_block(run_dir: Location, layer: str, slot: int, epoch: int, relu: bool, opened: str | None = None,
               store_folder: tuple[int, int] | None = None, digest: tuple[str, bytes] | None = None,
               rows: tuple[int, int] | None = None) -> np.ndarray:
    """Read one (sample, unit) block of a layer at one recorded epoch slot, or the samples ``rows`` of it.

    Parameters
    ----------
    run_dir : Path or str
        The run's location (:func:`actlab.location.location`): a Path for a run directory, a str for a run URL.
    layer : str
        Layer name.
    slot : int
        Index of the epoch in the store's ``layers/epoch`` array.
    epoch : int
        The training epoch of that slot (for error messages).
    relu : bool
        Apply ``max(x, 0)`` (post-activation of a ReLU layer).
    opened : str, optional
        :attr:`Run.opened` of the run being read: the reads of one opening share one opened array per layer and
        process. ``None`` opens the array for this read alone.
    store_folder : (int, int), optional
        :func:`actlab.store.store_folder_id` of the local store when the run was opened:
        checked after the read, so that a block of a store replaced since (``actlab record --overwrite``) is never
        returned.
    digest : (str, bytes), optional
        The algorithm and the digest committed with this epoch's shard (:func:`actlab.store.layer_shard_digests`):
        the shard's digest (:func:`actlab.store.integrity.file_shard_digest`: its index and inner-chunk CRC32Cs, or
        in a schema-4 store the SHA-256 of every byte) is taken before it is decoded, and a mismatch is refused
        before any value is used (a shard moved from another epoch or copied from another run passes every other
        check; the decoder checks each inner chunk against its CRC32C). ``None`` skips it; a block read in ranges
        passes it with its first range only.
    rows : (int, int), optional
        Read only the samples ``rows[0]:rows[1]`` (a block split along the sample axis,
        :mod:`~actlab.analysis.chunked`); default every sample.

    Returns
    -------
    ndarray, float32, shape (sample, unit)
        For an unreduced conv layer (stored as (sample, channel, y, x)), the mean over (y, x) of each channel,
        taken after the ReLU: the channel is the unit.

    Raises
    ------
    StoreError
        The block fails its digest or CRC32C check or cannot be decoded (the message names the array and epoch), or
        the store was replaced since the run was opened.
    """
    try:
        array = _open_preact(run_dir, layer) if opened is None else _opened_preact(run_dir, layer, opened)
        key = f"layers/{layer}/preact/{array.metadata.encode_chunk_key((slot,) + (0,) * (array.ndim - 1))}"
        # a shard that fails is never decoded
        verified = digest is None or file_shard_digest(files(store_location(run_dir)), key, digest[0],
                                                       inner_chunks(array)) == digest[1]
        block = None if not verified else np.asarray(read_slot(array, slot, rows), dtype=np.float32)
    except Exception as exc:
        _check_same_folder(run_dir, store_folder)  # a replaced store explains a failed read better than damage does
        where = "" if rows is None else f" (samples {rows[0]}:{rows[1]})"
        raise damage_error(run_dir, f"{layer_array_name(layer, 'preact', epoch)}{where} cannot be read "
                                    f"({exception_line(exc)})") from exc
    _check_same_folder(run_dir, store_folder)
    if block is None:
        raise damage_error(run_dir, f"{layer_array_name(layer, 'preact', epoch)} {digest_mismatch(key, digest[0])}")
    if relu:
        np.maximum(block, 0.0, out=block)
    if block.ndim == 3 + 1:  # (sample, channel, y, x)
        block = block.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
    return block


def sample_layout(run_dir: Location, layer: str, opened: str | None = None) -> tuple[int, int, int]:
    """How one block of ``layer`` lies in the store along the sample axis.

    Returns
    -------
    (int, int, int)
        Samples of a block, bytes one sample's activations take once read (float32, before any (y, x) mean),
        and samples per inner chunk of the layer's array (the unit a read decodes).
    """
    array = _open_preact(run_dir, layer) if opened is None else _opened_preact(run_dir, layer, opened)
    return int(array.shape[1]), 4 * int(np.prod(array.shape[2:])), int(array.chunks[1])


def read_probe_images(run_dir: Location, store_folder: tuple[int, int] | None = None,
                      checksum: int | None = None) -> np.ndarray:
    """Read the probe images (``probes/image``) of a run.

    Parameters
    ----------
    run_dir : Path or str
        The run's location (:func:`actlab.location.location`).
    store_folder : (int, int), optional
        :func:`actlab.store.store_folder_id` of the local store when the run was opened, checked after the read
        (as :func:`read_block` does).
    checksum : int, optional
        ``zlib.crc32`` of the images read when the run was opened (:attr:`Run.probes`): the images read now must
        have it (a chunk removed since reads as fill values, which the codecs' CRC32C cannot see).

    Returns
    -------
    ndarray, shape (sample, channel, height, width), the stored dtype

    Raises
    ------
    StoreError
        The images cannot be read or differ from those read when the run was opened (the message names the
        array), or the store was replaced since.
    """
    try:
        store = zarr_store(store_location(run_dir), read_only=True)
        images = np.asarray(for_reading(zarr.open_array(store, path="probes/image", mode="r", zarr_format=3))[...])
    except Exception as exc:
        _check_same_folder(run_dir, store_folder)
        raise damage_error(run_dir, f"array probes/image cannot be read ({exception_line(exc)})") from exc
    _check_same_folder(run_dir, store_folder)
    if checksum is not None and zlib.crc32(np.ascontiguousarray(images)) != checksum:
        raise damage_error(run_dir, "array probes/image differs from the images read when the run was opened")
    return images


def _lazy_images(run_dir: Location, store_folder: tuple[int, int] | None, opened: str, images: xr.Variable,
                 checksum: int) -> xr.Variable:
    """``images`` (the probe images as read by the store reader, ``checksum`` their CRC32) as a dask-backed variable
    of one chunk that reads them again where they are used (:func:`read_probe_images`, checked against ``checksum``)."""
    key = f"actlab-probe-images-{tokenize(str(run_dir), opened)}"
    chunks = tuple((size,) for size in images.shape)
    graph = {(key,) + (0,) * images.ndim: (read_probe_images, run_dir, store_folder, checksum)}
    data = da.Array(graph, key, chunks, dtype=images.dtype, meta=np.empty((0,) * images.ndim, dtype=images.dtype))
    return images.copy(deep=False, data=data)


def _check_same_folder(run_dir: Location, store_folder: tuple[int, int] | None) -> None:
    if store_folder is not None and store_folder_id(run_dir) != tuple(store_folder):
        raise replaced_error(run_dir)


def _read_block_3d(*read: Any) -> np.ndarray:
    """:func:`read_block` of the arguments ``read`` with a leading epoch axis of length 1."""
    return read_block(*read)[np.newaxis]


def readable_parameter_dims(parameters: xr.Dataset) -> xr.Dataset:
    """The stored parameters with dims named by module and role instead of position.

    A parameter ``<module>.<name>`` of dims (epoch, d0, d1, ...) gets dims (epoch, ``<module>.out``, ``<module>.in``,
    then ``<module>.ky``, ``<module>.kx`` for a 2-d kernel, ``<module>.k`` for a 1-d one, ``<module>.kz``, ``.ky``,
    ``.kx`` for a 3-d one): a Linear's weight (epoch, linear1.out, linear1.in) and its bias (epoch, linear1.out)
    share ``linear1.out``. A name that would give one dim two lengths (two parameters of one module whose first
    axes differ) keeps its positional name ``<name>[i]``.

    Parameters
    ----------
    parameters : xr.Dataset
        As :attr:`actlab.store.StoreView.parameters`: dims (epoch, ``<name>[0]``, ``<name>[1]``, ...).

    Returns
    -------
    xr.Dataset
        The same variables (still lazy) and ``epoch`` coordinate, dims renamed.
    """
    sizes: dict[str, int] = {}
    variables = {}
    for name, variable in parameters.data_vars.items():
        module = str(name).rpartition(".")[0] or str(name)
        n_kernel = variable.ndim - 3
        roles = ("out", "in", *(("k",) if n_kernel == 1 else ("kz", "ky", "kx")[3 - n_kernel:] if n_kernel <= 3
                                else tuple(f"k{i}" for i in range(n_kernel))))
        renames = {}
        for dim, role, size in zip(variable.dims[1:], roles, variable.shape[1:]):
            readable = f"{module}.{role}"
            if sizes.setdefault(readable, size) == size:
                renames[dim] = readable
        variables[name] = variable.rename(renames)
    return xr.Dataset(variables, attrs=parameters.attrs)


class Run:
    """A recorded run opened for analysis; create it with :func:`open_run`.

    Attributes
    ----------
    path : Path or str
        The run directory, or the run URL.
    attrs : dict
        Store root attributes.
    config : dict
        Resolved run configuration.
    metrics : xr.Dataset
        Dims (epoch,): committed per-epoch metrics.
    probes : xr.Dataset
        Dims (sample, channel, height, width): ``image`` plus probe coords. ``image`` is dask-backed: the images
        are read where they are used (``run.probes["image"].values`` or :meth:`probe_images`), not held by the
        run (50,000 CIFAR images are 154 MB), and must be those read when the run was opened.
    training : xr.Dataset
        Dims (train_sample,): index into the full training set, label, original_label and is_noisy of every
        training sample used, in training order.
    evaluation : xr.Dataset
        Dims (test_sample,): index into the full test set and label of every evaluated test sample.
    parameters : xr.Dataset
        Every state_dict entry by name (``linear1.weight``), dims (epoch, ...), dask-backed with one chunk per
        committed recorded epoch, coord ``epoch``; see :func:`readable_parameter_dims` for the other dims' names.
    dynamics : xr.Dataset or None
        Dims (epoch, train_sample), lazy: every training sample's ``loss``, ``margin``, ``correct``,
        ``correct_original`` at every committed epoch, with the ``training`` coords; None when the store has none.
    layer_names : list of str
        Layers in forward order.
    layer_specs : dict of str -> dict
        Per layer: name, width, fan_in, activation, module, kind, reduce, shape.
    epochs : ndarray of int
        Committed recorded epochs.
    slots : ndarray of int
        Store slot of each committed recorded epoch.
    opened : str
        A token unique to this opening; the blocks read through it share one opened array per layer.
    run_id : str or None
        The run id of the recording (``config.resolved.run_id``).
    state_digest : str
        :func:`actlab.store.committed_state_digest` of the store as opened: with ``run_id``, the identity an
        analysis records, and that saved results must match to describe this run.

    Parameters
    ----------
    view : StoreView
    identity : tuple
        :func:`actlab.store.store_identity` of the store, taken before ``view`` was read
        (:meth:`check_unchanged` compares it with the store's identity now).
    shard_digests : (str, dict of str -> ndarray), optional
        :func:`actlab.store.layer_shard_digests` of the store: every block read checks its shard against them
        (:func:`read_block`). None reads without that check.
    """

    def __init__(self, view: StoreView, identity: tuple[Any, ...],
                 shard_digests: tuple[str, dict[str, np.ndarray]] | None = None) -> None:
        self.path: Location = view.path
        self._identity = identity
        self._shard_digests = shard_digests
        self.attrs: dict[str, Any] = dict(view.attrs)
        self.config: dict[str, Any] = dict(self.attrs.get("config", {}))
        self.metrics = view.metrics
        self.opened = uuid.uuid4().hex
        images = view.probes["image"].variable
        self._images_checksum = zlib.crc32(np.ascontiguousarray(images.values))
        self.probes = view.probes.assign(image=_lazy_images(view.path, identity[0], self.opened, images,
                                                            self._images_checksum))
        self.training = view.training
        self.evaluation = view.evaluation
        self.parameters = readable_parameter_dims(view.parameters)
        self.dynamics = view.dynamics
        self.layer_names: list[str] = view.layer_names
        self.layer_specs: dict[str, dict[str, Any]] = {spec["name"]: dict(spec) for spec in self.attrs["layers"]}
        self.epochs = np.asarray(view.epochs, dtype=int)
        all_epochs = list(self.attrs["record_epochs"])
        self.slots = np.asarray([all_epochs.index(int(e)) for e in self.epochs], dtype=int)
        self._sample_coords = {name: self.probes[name] for name in PROBE_COORDS}
        self.run_id: str | None = recorded_run_id(self.attrs)
        self.state_digest: str = committed_state_digest(view)

    def __repr__(self) -> str:
        return (
            f"<actlab.Run {self.path} status={self.attrs.get('status')} layers={self.layer_names} "
            f"epochs={len(self.epochs)} ({self.epochs[0]}..{self.epochs[-1]}) samples={self.n_samples}>"
        )

    @property
    def n_samples(self) -> int:
        """Number of probe samples."""
        return int(self.probes.sizes["sample"])

    @property
    def n_classes(self) -> int:
        """Number of classes (from the dataset description, else the largest label + 1)."""
        names = self.attrs.get("dataset", {}).get("class_names")
        if names:
            return len(names)
        return int(max(self.probes["label"].max(), self.probes["original_label"].max())) + 1

    @property
    def store_folder(self) -> tuple[int, int] | None:
        """Device and inode of the local store folder when the run was opened (None for a URL); every block read
        checks it (:func:`read_block`)."""
        return self._identity[0]

    def check_unchanged(self) -> None:
        """Raise :class:`StoreError` when the store has been replaced since the run was opened (``actlab record
        --overwrite`` meanwhile): what was read of it may mix two recordings."""
        if store_identity(self.path) != self._identity:
            raise replaced_error(self.path)

    def is_relu(self, name: str) -> bool:
        """Whether the post-activation of layer ``name`` is ``max(preact, 0)`` (activation ``"relu"``; the store
        reader admits only ``"relu"`` and ``"identity"``)."""
        return self.layer_specs[name]["activation"] == "relu"

    def layer(self, name: str, kind: str = "post") -> xr.DataArray:
        """Lazy activations of one layer.

        Parameters
        ----------
        name : str
            Layer name (see :attr:`layer_names`).
        kind : {"post", "pre"}
            ``"post"``: ReLU of the pre-activation for ReLU layers, the pre-activation (logits) otherwise;
            ``"pre"``: the stored pre-activation.

        Returns
        -------
        xr.DataArray, float32, dims (epoch, sample, unit)
            Dask-backed with one chunk per epoch; probe coords on ``sample``. A conv layer's unit is its channel:
            a stored (epoch, sample, channel, y, x) layer is read as the mean over (y, x) of each channel (the
            full maps are in ``open_store(run.path).layers[name]["preact"]``).
        """
        if name not in self.layer_specs:
            raise StoreError(f"{self.path} has no layer {name!r}; layers are {self.layer_names}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
        relu = kind == "post" and self.is_relu(name)
        width = int(self.layer_specs[name]["width"])
        token = tokenize(str(self.path), name, relu, self.slots.tolist(), self.attrs.get("created"))
        key = f"actlab-{name}-{kind}-{token}"
        graph = {(key, i, 0, 0): (_read_block_3d, *self.read_args(name, i, kind)) for i in range(len(self.epochs))}
        chunks = ((1,) * len(self.epochs), (self.n_samples,), (width,))
        data = da.Array(graph, key, chunks, dtype=np.float32, meta=np.empty((0, 0, 0), dtype=np.float32))
        spec = self.layer_specs[name]
        return xr.DataArray(
            data,
            dims=("epoch", "sample", "unit"),
            coords={
                "epoch": ("epoch", self.epochs, {"long_name": "training epoch", "units": "epoch"}),
                "sample": ("sample", self.probes["sample"].values, {"long_name": "probe sample"}),
                "unit": ("unit", np.arange(width), {"long_name": f"unit of {name}"}),
                **self._sample_coords,
            },
            name=name,
            attrs={
                "long_name": f"{'post' if kind == 'post' else 'pre'}-activation of {name}",
                "units": "1",
                "layer": name,
                "kind": kind,
                "activation": spec["activation"] if kind == "post" else "identity",
            },
        )

    def layers(self, kind: str = "post") -> dict[str, xr.DataArray]:
        """All layers' lazy activations, in forward order (see :meth:`layer`)."""
        return {name: self.layer(name, kind) for name in self.layer_names}

    def read_args(self, name: str, index: int, kind: str = "post") -> tuple[Any, ...]:
        """The arguments of :func:`read_block` (picklable) that read layer ``name`` at the ``index``-th committed
        epoch of this opening, its shard checked against the digest committed with it where the store has one."""
        slot = int(self.slots[index])
        digest = (None if self._shard_digests is None else
                  (self._shard_digests[0], self._shard_digests[1][name][slot].tobytes()))
        return (self.path, name, slot, int(self.epochs[index]), kind == "post" and self.is_relu(name), self.opened,
                self.store_folder, digest)

    def read_block(self, name: str, index: int, kind: str = "post") -> np.ndarray:
        """Read one (sample, unit) block: layer ``name`` at the ``index``-th committed epoch."""
        return read_block(*self.read_args(name, index, kind))

    def probe_images(self) -> np.ndarray:
        """The probe images, read now: ``probes["image"].values`` without dask, whose first compute imports
        dask.distributed where it is installed (0.5 to 0.7 s of CPU; the analysis reads the images this way).

        Raises
        ------
        StoreError
            As :func:`read_probe_images`: they cannot be read or differ from those read when the run was opened.
        """
        return read_probe_images(self.path, self.store_folder, self._images_checksum)


Reduced = TypeVar("Reduced")


def reduce_blocks(run: Run, blocks: Sequence[tuple[str, int]], reduce: Callable[[np.ndarray], Reduced], *,
                  kind: str = "post", max_workers: int = 1,
                  advance: Callable[[int], Any] | None = None) -> dict[tuple[str, int], Reduced]:
    """``reduce`` of each (layer, epoch index) block of ``run``, read and reduced on ``max_workers`` threads.

    Parameters
    ----------
    run : Run
    blocks : sequence of (str, int)
        Layer name and index into ``run.epochs``.
    reduce : callable
        Called with each block, an ndarray (sample, unit) (:meth:`Run.read_block`).
    kind : {"post", "pre"}
    max_workers : int
    advance : callable, optional
        Called with 1 as each block is done (a progress bar's ``update``).

    Returns
    -------
    dict of (layer, index) -> what ``reduce`` returned
    """
    out = {}
    with cf.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {pool.submit(lambda block: reduce(run.read_block(block[0], block[1], kind)), block): block
                   for block in blocks}
        for future in cf.as_completed(futures):
            out[futures[future]] = future.result()
            if advance is not None:
                advance(1)
    return out


def open_run(path: str | os.PathLike) -> Run:
    """Open a recorded (or still recording) run for analysis.

    Parameters
    ----------
    path : path or URL
        Run directory (``runs/<name>``), or a run URL read lazily through fsspec (``s3://bucket/runs/<name>``,
        ``gs://...``, ``memory://...``; ``file://`` is a local path). Storage options come from the environment
        (:mod:`actlab.location`). Every integrity check reads its byte ranges through fsspec, so it holds for
        URLs as for local runs.

    Returns
    -------
    Run

    Raises
    ------
    StoreError
        Not a run, a newer schema version, an array not as ``docs/store-format.md`` says, no committed recorded
        epoch, or a damaged array (missing, empty or truncated shard, checksum mismatch); the message names the
        array and, for a per-epoch array, the epoch. A layer shard whose digest is not the one committed with its
        epoch is refused when its block is first read (:func:`read_block`), before any value of it is used.

    Notes
    -----
    On Linux (glibc) this caps the process's malloc arenas (:func:`~actlab.analysis.allocator.share_arenas`),
    before the store's reader starts its threads, unless the environment sets ``MALLOC_ARENA_MAX``: the analysis's
    threads then reuse each other's freed memory.
    """
    allocator.share_arenas()
    path = location(path)
    if not is_remote(path) and not path.exists():
        raise StoreError(f"{path.absolute()} does not exist; check the run directory")
    attrs = read_attrs(path)  # once, for the identity, the view and the damage check
    identity = store_identity(path, attrs)  # before the store is read: a replacement meanwhile shows as a change
    view = open_store(path, attrs=attrs)
    if len(view.epochs) == 0:
        raise StoreError(f"{path} has no committed recorded epoch yet; wait for the first recorded epoch of the run")
    # the layer shards' digests are compared as each block is read (read_block): their bytes are read once
    damaged = damaged_chunks(path, attrs=attrs, layer_digests=False)
    if damaged:
        more = f" (and {len(damaged) - 1} more problems)" if len(damaged) > 1 else ""
        raise damage_error(path, f"{damaged[0]}{more}")
    return Run(view, identity, layer_shard_digests(path, attrs=attrs))
