"""examples/quickstart.ipynb executes headlessly on a planted-signal run, in a kernel of this interpreter, started in
``examples/`` as Jupyter starts it, finding ``runs/quickstart`` of the repository root one folder up; started in the
repository root, it finds ``runs/quickstart`` there."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from fixtures_store import Planted, planted_run

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, Planted]:
    """A folder with the repository's layout, examples/ beside runs/quickstart (a planted run), shared by the tests."""
    root = tmp_path_factory.mktemp("clone")
    (root / "examples").mkdir()
    return root, planted_run(root / "runs" / "quickstart")


def _execute(cells: int | None, folder: Path, monkeypatch) -> list[dict]:
    """Execute the notebook's first ``cells`` cells (all with None) in a kernel started in ``folder``; their outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.manager import KernelManager

    monkeypatch.delenv("ACTLAB_RUN", raising=False)
    km = KernelManager(kernel_name="python3")
    # the "python3" kernel must run this interpreter (the venv), not whatever python is first on PATH
    assert Path(km.format_kernel_cmd()[0]).resolve() == Path(sys.executable).resolve()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = nb.cells[:cells]
    nbclient.NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(folder)}}).execute()
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [out for cell in code_cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    assert not [out for out in outputs if out.get("name") == "stderr"]  # no warnings, no stray progress bars
    return code_cells


def _text(code_cells: list[dict]) -> str:
    outputs = [out for cell in code_cells for out in cell.get("outputs", [])]
    return "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs)


def test_quickstart_notebook_executes_from_examples(clone, monkeypatch):
    root, planted = clone
    code_cells = _execute(None, root / "examples", monkeypatch)
    images = [cell for cell in code_cells if any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))]
    plot_cells = [cell for cell in code_cells if "plots.plot_" in cell.source]
    assert len(images) == len(plot_cells) >= 7  # every figure cell displayed its figure
    text = _text(code_cells)
    assert "double descent (test loss)" in text and "hidden1 unit 3" in text
    assert f"{planted.run_dir}: status complete" in text and "recorded epochs [0, 10, 20, 30, 40, 50]" in text
    assert not re.search(r"np\.(int|float|bool|str_)\w*\(", text), re.search(r".{60}np\.\w+\(.{20}", text)
    assert (planted.run_dir / "analysis" / "report.html").is_file()


def test_quickstart_notebook_finds_the_run_from_the_repository_root(clone, monkeypatch):
    """Started in the root, the first code cell opens ``runs/quickstart`` there. Only that cell depends on the folder
    the kernel starts in: every later one reads the run through ``RUN``, the absolute path it resolves (checked)."""
    nbformat = pytest.importorskip("nbformat")
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    first = next(i for i, cell in enumerate(cells) if cell.cell_type == "code")
    assert "RUN = Path(" in cells[first].source and ").resolve()" in cells[first].source
    assert not [cell for cell in cells[first + 1:] if re.search(r"\"[^\"]*(runs|\.\./)[^\"]*\"", cell.source)]
    root, planted = clone
    text = _text(_execute(first + 1, root, monkeypatch))
    assert f"{planted.run_dir}: status complete" in text and "recorded epochs [0, 10, 20, 30, 40, 50]" in text


def test_quickstart_header_records_the_run_it_analyses():
    """The header's record command is README command 1's (the one bench_quickstart.sh measures)."""
    nbformat = pytest.importorskip("nbformat")
    header = nbformat.read(NOTEBOOK, as_version=4).cells[0].source
    readme = (NOTEBOOK.parents[1] / "README.md").read_text()
    record = next(line for line in header.splitlines() if line.startswith("OMP_NUM_THREADS=1 actlab record"))
    assert record in readme and record.endswith("--out runs/quickstart")
