"""Time and size of the README's Python snippets that record, each run exactly as written.

Every fenced ``python`` block of README.md that calls ``actlab.record(`` runs in a fresh interpreter (one torch thread,
``OMP_NUM_THREADS=1``) in an empty temporary folder; the script prints its wall time and the size of what it wrote.
The README states these numbers beside each snippet. Nothing is asserted.

    python benchmarks/bench_snippets.py            # one line per snippet
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
    return [block for block in blocks if "actlab.record(" in block]


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; {os.cpu_count()} cores")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    for block in snippets(ROOT / "README.md"):
        with tempfile.TemporaryDirectory(prefix="actlab-snippet-") as folder:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", block], cwd=folder, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            outputs = sorted(str(p.relative_to(folder)) for p in (Path(folder) / "runs").iterdir()) if done.returncode == 0 else []
            first = next(line for line in block.splitlines() if "actlab.record(" in line).strip()
            status = "exit 0" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1]}"
            print(f"{first[:70]}...: {seconds:.1f} s, {folder_size(Path(folder)) / 1e6:.1f} MB in {', '.join(outputs)} ({status})")
    print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
