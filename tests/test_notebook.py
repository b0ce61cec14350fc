"""examples/quickstart.ipynb executes headlessly on a planted-signal run, in a kernel of this interpreter, started in
``examples/`` as Jupyter starts it, finding ``runs/quickstart`` of the repository root one folder up."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from fixtures_store import planted_run

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_executes_from_examples(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.manager import KernelManager

    clone = tmp_path / "clone"  # the repository's layout: examples/ beside runs/
    (clone / "examples").mkdir(parents=True)
    planted = planted_run(clone / "runs" / "quickstart")
    monkeypatch.delenv("ACTLAB_RUN", raising=False)
    km = KernelManager(kernel_name="python3")
    # the "python3" kernel must run this interpreter (the venv), not whatever python is first on PATH
    assert Path(km.format_kernel_cmd()[0]).resolve() == Path(sys.executable).resolve()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(clone / "examples")}})
    client.execute()

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [out for cell in code_cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    assert not [out for out in outputs if out.get("name") == "stderr"]  # no warnings, no stray progress bars
    images = [cell for cell in code_cells if any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))]
    plot_cells = [cell for cell in code_cells if "plots.plot_" in cell.source]
    assert len(images) == len(plot_cells) >= 7  # every figure cell displayed its figure
    text = "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs)
    assert "double descent (test loss)" in text and "hidden1 unit 3" in text
    assert f"{planted.run_dir}: status complete" in text and "recorded epochs [0, 10, 20, 30, 40, 50]" in text
    assert not re.search(r"np\.(int|float|bool|str_)\w*\(", text), re.search(r".{60}np\.\w+\(.{20}", text)
    assert (planted.run_dir / "analysis" / "report.html").is_file()


def test_quickstart_header_records_the_run_it_analyses():
    """The header's record command is README command 1's (the one bench_quickstart.sh measures)."""
    nbformat = pytest.importorskip("nbformat")
    header = nbformat.read(NOTEBOOK, as_version=4).cells[0].source
    readme = (NOTEBOOK.parents[1] / "README.md").read_text()
    record = next(line for line in header.splitlines() if line.startswith("OMP_NUM_THREADS=1 actlab record"))
    assert record in readme and record.endswith("--out runs/quickstart")
