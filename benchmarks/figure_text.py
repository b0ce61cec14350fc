"""Count overlapping texts and texts that leave the figure, per figure that ``actlab analyze`` draws from saved results.

Usage::

    python benchmarks/figure_text.py runs/quickstart/analysis/results.zarr [more results.zarr ...]
    python benchmarks/figure_text.py --fixtures     # the planted cases of tests/test_figure_text.py

Uses the check of tests/test_figure_text.py (every visible text's window extent from the Agg renderer). Run it
with another checkout first on PYTHONPATH to count what an older revision drew.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import test_figure_text as check  # noqa: E402


class _Folders:
    """Enough of pytest's tmp_path_factory for the planted fixtures."""

    def __init__(self) -> None:
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="figure_text_"))

    def mktemp(self, name: str) -> pathlib.Path:
        return pathlib.Path(tempfile.mkdtemp(prefix=name, dir=self.root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=pathlib.Path, help="results.zarr folders written by actlab analyze")
    parser.add_argument("--fixtures", action="store_true", help="count the planted cases of tests/test_figure_text.py")
    args = parser.parse_args()
    from actlab import workflow
    from actlab.analysis import load_results

    counts = {}
    if args.fixtures:
        counts.update(check.text_problem_counts(check.drawn_cases.__wrapped__(_Folders())))
    for path in args.results:
        results = load_results(path)
        drawn, _ = workflow.draw_figures(results, log_x=workflow._use_log_x(results.attrs.get("epochs", [])))
        counts.update({f"{path.parent.name}/{name}": tuple(map(len, check.text_problems(fig))) for name, _, _, fig in drawn})
    print(f"{'figure':44s} {'overlapping pairs':>18s} {'leaving the figure':>19s}")
    for name, (overlapping, outside) in counts.items():
        print(f"{name:44s} {overlapping:18d} {outside:19d}")


if __name__ == "__main__":
    main()
