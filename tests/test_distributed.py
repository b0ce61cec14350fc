"""The analysis on a dask.distributed cluster of worker processes gives the threaded results."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from cli_runner import run_cli  # noqa: E402
from fixtures_store import cached_planted  # noqa: E402

from actlab.analysis import analyze, load_results, summary  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes with one thread each; they import actlab from PYTHONPATH like this process."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                                  dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def threaded(tmp_path_factory):
    """The planted run, its results with local threads (``analyze`` defaults, as the CLI) and their summary."""
    planted = cached_planted(tmp_path_factory)
    results = analyze(planted.run_dir, progress=False)
    return planted, results, json.loads(json.dumps(summary(results)))


def _assert_same_results(a, path_b) -> None:
    b = load_results(path_b)
    assert sorted(node.path for node in a.subtree) == sorted(node.path for node in b.subtree)
    for node in a.subtree:
        ds = node.to_dataset(inherit=False)
        for name, variable in ds.data_vars.items():
            other = b[node.path][name].values
            if variable.dtype.kind in "fc":  # the moments are summed in completion order: equal up to rounding
                scale = float(np.nanmax(np.abs(other), initial=0.0))
                np.testing.assert_allclose(variable.values, other, rtol=1e-9, atol=1e-9 * scale, err_msg=f"{node.path}/{name}")
            else:
                np.testing.assert_array_equal(variable.values, other, err_msg=f"{node.path}/{name}")


def test_analyze_and_compare_on_worker_processes_equal_threads(cluster, threaded, tmp_path):
    planted, results, threads = threaded
    workers = cluster.scheduler_info["workers"]
    assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers.values())
    transitions = cluster.scheduler.transition_counter
    code, _, err = run_cli("analyze", planted.run_dir, "--no-progress", "--format", "png", "--out", tmp_path / "cluster",
                            "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    n_blocks = 4 * 6  # layers x recorded epochs: every block went through the scheduler (released -> ... -> memory)
    assert cluster.scheduler.transition_counter - transitions >= 3 * n_blocks
    assert json.loads((tmp_path / "cluster" / "summary.json").read_text()) == threads
    _assert_same_results(results, tmp_path / "cluster" / "results.zarr")

    code, _, err = run_cli("compare", planted.run_dir, "--no-progress", "--format", "png", "--out", tmp_path / "cmp",
                            "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    assert json.loads((tmp_path / "cmp" / "summary.json").read_text()) == {planted.run_dir.name: threads}


def _children(psutil) -> set[int]:
    """This process's child processes but multiprocessing's resource tracker, which the first worker process it
    spawns starts and which lives as long as this process does (it exits with the ``actlab`` command's process)."""
    alive = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # gone since listed
            if "multiprocessing.resource_tracker" not in " ".join(child.cmdline()):
                alive.add(child.pid)
    return alive


def test_scheduler_local_n_starts_and_closes_a_cluster(threaded, tmp_path):
    planted, results, threads = threaded
    psutil = pytest.importorskip("psutil")
    before = _children(psutil)
    code, _, err = run_cli("analyze", planted.run_dir, "--no-progress", "--format", "png", "--out", tmp_path / "local2",
                            "--scheduler", "local:2")
    assert code == 0, err
    assert _children(psutil) <= before  # the command's worker processes are gone again
    assert json.loads((tmp_path / "local2" / "summary.json").read_text()) == threads
    _assert_same_results(results, tmp_path / "local2" / "results.zarr")


@pytest.mark.parametrize("value", ["local:0", "local:x", "10.0.0.5:8786", "http://host:8786"])
def test_invalid_scheduler_is_one_line_naming_it(tmp_path_factory, tmp_path, value):
    planted = cached_planted(tmp_path_factory)
    code, _, err = run_cli("analyze", planted.run_dir, "--no-progress", "--out", tmp_path / "out", "--scheduler", value)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("actlab: error: ") and repr(value) in err
    assert not (tmp_path / "out").exists()


def test_extras_on_worker_processes_equal_their_own_functions(cluster, tmp_path_factory):
    """The probes' plan and the CKA subset go to the workers once; each block's values come back to the pass."""
    from actlab.analysis import linear_probes, open_run, similarity_along_training

    planted = cached_planted(tmp_path_factory)
    results = analyze(planted.run_dir, progress=False, scheduler=cluster.scheduler_address, extras=["probes", "cka"])
    assert results.attrs["errors"] == {}
    run = open_run(planted.run_dir)
    probes, similarity = linear_probes(run), similarity_along_training(run)
    for name in ("accuracy_fold", "p_value", "q_value"):
        np.testing.assert_array_equal(results["probes"][name].values, probes[name].values, err_msg=name)
    for name in ("cka_to_final", "cka"):
        np.testing.assert_array_equal(results["similarity"][name].values, similarity[name].values, err_msg=name)
