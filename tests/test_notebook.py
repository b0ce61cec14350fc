"""examples/quickstart.ipynb executes headlessly on a planted-signal run, in a kernel of this interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fixtures_store import planted_run

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.manager import KernelManager

    planted = planted_run(tmp_path / "quickstart")
    monkeypatch.setenv("ACTLAB_RUN", str(planted.run_dir))
    km = KernelManager(kernel_name="python3")
    # the "python3" kernel must run this interpreter (the venv), not whatever python is first on PATH
    assert Path(km.format_kernel_cmd()[0]).resolve() == Path(sys.executable).resolve()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    errors = [out for cell in code_cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    images = [cell for cell in code_cells if any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))]
    plot_cells = [cell for cell in code_cells if "plots.plot_" in cell.source]
    assert len(images) == len(plot_cells) >= 7  # every figure cell displayed its figure
    text = "\n".join(out.get("text", "") for cell in code_cells for out in cell.get("outputs", []))
    assert "double descent (test loss)" in text and "hidden1 unit 3" in text
    assert (planted.run_dir / "analysis" / "report.html").is_file()
