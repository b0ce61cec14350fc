"""The analysis half installs and runs without torch; the record side says in one line how to get it."""

from __future__ import annotations

import os
import subprocess
import sys

from fixtures_store import planted_run

from conftest import REPO_ROOT

NO_TORCH = """import sys
class NoTorch:  # as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in ('torch', 'torchvision'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
"""


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


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
