"""The analysis half installs and runs without torch; the record side says in one line how to get it; a clone used
before its dependencies are installed says which module is missing and the pip command; a script run beside a clone
named ``actlab/`` imports the package, not the clone folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_store import planted_run

import actlab

from conftest import REPO_ROOT

NO_TORCH = """import sys
class NoTorch:  # as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in ('torch', 'torchvision'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
"""


def _python(code: str, cwd, hide: str = NO_TORCH) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", hide + code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


NO_XARRAY = NO_TORCH.replace("('torch', 'torchvision')", "('xarray',)").replace("torch were", "xarray were")
PYTHON_M_ACTLAB = "import runpy; sys.argv = ['actlab', {}]; runpy.run_module('actlab', run_name='__main__', alter_sys=True)"


def test_a_clone_without_its_dependencies_names_the_module_and_the_pip_command(tmp_path):
    """``python -m actlab`` and ``import actlab`` in a clone whose dependency (xarray here) is not installed: one line
    naming the module and ``pip install -e .`` in the clone, exit 2; a missing optional module names its extra."""
    assert "('xarray',)" in NO_XARRAY
    planted_run(tmp_path / "run")
    done = _python(PYTHON_M_ACTLAB.format("'analyze', 'run'"), tmp_path, hide=NO_XARRAY)
    clone = f"in the clone {REPO_ROOT.resolve()}, run pip install -e ."
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr == f"actlab: error: actlab needs the module 'xarray', which is not installed for {sys.executable}; {clone}\n"
    assert not (tmp_path / "run" / "analysis").exists()
    done = _python(PYTHON_M_ACTLAB.format("'--version'"), tmp_path, hide=NO_XARRAY)  # builds the parser first
    assert done.returncode == 2 and done.stderr.startswith("actlab: error: actlab needs the module 'xarray'"), done.stderr

    done = _python("import actlab; print(actlab.__version__, flush=True); actlab.open_run('run')", tmp_path, hide=NO_XARRAY)
    assert done.stdout.split() == [actlab.__version__]  # import actlab itself needs nothing
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        f"ModuleNotFoundError: actlab needs the module 'xarray', which is not installed for {sys.executable}; {clone}")

    error = ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn")
    assert actlab.missing_dependency(error).endswith(f"in the clone {REPO_ROOT.resolve()}, run pip install -e '.[record]'")
    assert actlab.missing_dependency(ModuleNotFoundError("x", name="actlab.gone")) is None  # a bug, not an install
    assert actlab.missing_dependency(ImportError("cannot import name 'x'", name="numpy")) is None


def test_record_without_torch_says_how_to_get_it(tmp_path):
    done = _python("from actlab.cli import main; sys.exit(main(['record', '--dataset', 'digits', '--out', 'run']))",
                   tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("actlab: error: recording needs torch") and "pip install 'actlab[record]'" in done.stderr
    assert "--index-url https://download.pytorch.org/whl/cpu" in done.stderr and not (tmp_path / "run").exists()
    done = _python("import actlab; actlab.record(dataset='digits')", tmp_path)
    assert done.returncode == 1 and "ConfigError: recording needs torch" in done.stderr.strip().splitlines()[-1]


def test_analyze_without_torch(tmp_path):
    planted_run(tmp_path / "run")  # planted double descent
    done = _python("import actlab\n"
                   "from actlab.analysis import analyze, summary\n"
                   "from actlab.cli import build_parser\n"
                   "results = analyze(actlab.open_run('run'), progress=False, n_permutations=9, n_bootstrap=20)\n"
                   "build_parser()\n"
                   "print(results.attrs['errors'], summary(results)['double_descent']['present'], 'torch' in sys.modules)",
                   tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["{}", "True", "False"]


def _clone_named_actlab(parent: Path, pyproject: str) -> Path:
    """A folder ``parent/actlab`` holding what an install of the repository reads (as ``git clone URL`` names it)."""
    clone = parent / "actlab"
    shutil.copytree(REPO_ROOT / "actlab", clone / "actlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "README.md", clone)
    (clone / "pyproject.toml").write_text(pyproject)
    return clone


def _import_beside(clone: Path, python: Path, code: str) -> subprocess.CompletedProcess:
    """``python -c code`` run in the folder that holds ``clone``, once ``clone`` is installed with ``pip install -e``."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation", "-e",
                           clone], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return subprocess.run([python, "-c", code], cwd=clone.parent, env=env, capture_output=True, text=True, timeout=300)


def test_a_script_beside_a_clone_named_actlab_imports_the_package(tmp_path):
    """From the folder that holds a clone named ``actlab/``, ``import actlab`` finds the editable install's package,
    not the clone folder: pyproject.toml's ``package-dir`` makes setuptools put the clone on sys.path (a .pth file).
    Without it (the control), setuptools' import hook comes after the current folder, whose ``actlab/`` wins as a
    namespace package that lacks every name of the package."""
    setuptools = pytest.importorskip("setuptools")  # builds the editable installs here, offline
    if int(setuptools.__version__.split(".")[0]) < 68:
        pytest.skip(f"setuptools {setuptools.__version__} is older than the build's (>= 68)")
    venv = tmp_path / "venv"  # a throwaway venv that sees this one's packages and pip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=300)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    (site_packages / "this_env.pth").write_text("\n".join(path for path in sys.path if path.endswith("site-packages")))
    python = venv / "bin" / "python"
    code = "import actlab; print(actlab.__version__, actlab.__file__)"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()

    without, count = re.subn(r"\[tool\.setuptools\]\n(#.*\n)*package-dir = .*\n", "", pyproject)
    assert count == 1
    done = _import_beside(_clone_named_actlab(tmp_path / "control", without), python, code)
    assert done.returncode == 1 and "module 'actlab' has no attribute '__version__'" in done.stderr, done.stderr

    clone = _clone_named_actlab(tmp_path / "work", pyproject)
    done = _import_beside(clone, python, code)
    assert done.returncode == 0 and done.stdout.split() == [actlab.__version__, str(clone / "actlab" / "__init__.py")], done
