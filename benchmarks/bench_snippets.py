"""Time and size of the Python snippets of README.md and docs/analysis.md that record or analyse, each run as written.

Every fenced ``python`` block of those pages that calls ``actlab.record(`` or opens ``runs/quickstart`` runs in a fresh
interpreter (one torch thread, ``OMP_NUM_THREADS=1``) in an empty temporary folder (for the latter, after README
command 1's ``actlab record``, untimed); the script prints its wall time and the size of what it wrote. The pages
state these numbers beside each snippet. Nothing is asserted.

    python benchmarks/bench_snippets.py                     # one line per snippet
    python benchmarks/bench_snippets.py runs/quickstart     # only the snippets that hold this text
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snippets(readme: Path) -> list[str]:
    """The fenced python blocks of ``readme`` that record a run."""
    blocks = re.findall(r"^```python\n(.*?)^```", readme.read_text(), flags=re.S | re.M)
    return [block for block in blocks if "actlab.record(" in block or '"runs/quickstart"' in block]


def quickstart_record(readme: Path) -> str:
    """README command 1's ``actlab record`` (the line after ``# 1.``, from ``OMP_NUM_THREADS=1 actlab record``)."""
    command = readme.read_text().split("\n# 1.", 1)[1].splitlines()[1]
    return command[command.index("OMP_NUM_THREADS=1 actlab record"):].split(" && ")[0]


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; {os.cpu_count()} cores")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    blocks = snippets(ROOT / "README.md") + snippets(ROOT / "docs" / "analysis.md")
    for block in (block for block in blocks if only in block):
        with tempfile.TemporaryDirectory(prefix="actlab-snippet-") as folder:
            if '"runs/quickstart"' in block:
                actlab = f"{sys.executable} -m actlab.cli record"
                command = quickstart_record(ROOT / "README.md").replace("actlab record", actlab, 1)
                subprocess.run(["bash", "-c", command], cwd=folder, env=env, check=True, capture_output=True)
            before = folder_size(Path(folder))
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", block], cwd=folder, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            outputs = sorted(str(p.relative_to(folder)) for p in (Path(folder) / "runs").iterdir()) if done.returncode == 0 else []
            first = next(line for line in block.splitlines() if "actlab.record(" in line or "open_run(" in line).strip()
            status = "exit 0" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1]}"
            print(f"{first[:70]}...: {seconds:.1f} s, wrote {(folder_size(Path(folder)) - before) / 1e6:.1f} MB, runs: {', '.join(outputs)} ({status})")
    print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
