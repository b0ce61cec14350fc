"""``actlab analyze`` and ``actlab compare``: thin command-line layers over :mod:`actlab.workflow`."""

from __future__ import annotations

import argparse
import sys
import textwrap
import webbrowser
from pathlib import Path
from typing import Any

from actlab.store import ANALYSIS_DIRNAME

DEFAULT_COMPARE_DIR = Path("runs") / "compare"

ANALYZE_EPILOG = f"""\
examples:
  actlab analyze runs/mlp7                       all analyses, figures and report of one run
  actlab analyze runs/mlp7 --format png --open   PNG figures only, then open the report in a browser
  actlab analyze runs/mlp7 --scheduler tcp://10.0.0.5:8786
                                                 compute on a running dask.distributed cluster
  actlab analyze runs/mlp7 --scheduler local:4   start a local cluster of 4 worker processes for
                                                 this command only, and close it after
  actlab analyze s3://bucket/runs/mlp7           a run in an object store, read lazily; the analysis
                                                 goes to s3://bucket/runs/mlp7/analysis
  actlab analyze s3://bucket/runs/mlp7 --out reports/mlp7
                                                 the same, written to a local folder
  actlab analyze runs/mlp7 --extra probes,cka    also linear probes per layer x epoch (is the noisy
                                                 probes' original label decodable?) and debiased
                                                 linear CKA along training (when does a layer settle?)
  actlab analyze runs/mlp7 --extra memorisation
                                                 also: do the noisy probes memorised late separate
                                                 more than those memorised early? (every layer and
                                                 epoch, with a permutation null)

what is written (into RUN/{ANALYSIS_DIRNAME}/ unless --out DIR):
  report.html          self-contained report: a summary, the findings table, figures with
                       their takeaways, how to read it (each rule once), details, configuration;
                       figures are embedded, so the file opens offline in any browser
  summary.json         the headline numbers (double descent epochs, strongest separation,
                       large activation, input-vs-output explanation, path attribution)
  results.zarr/        every analysis result (reload with actlab.analysis.load_results)
  figures/NAME.png     one file per figure and format (--format)
  figures/NAME.svg

The run may still be recording: committed epochs are analysed. The output
directory is replaced only once everything is written. RUN and --out may be URLs
that fsspec opens (s3://, gs://, memory://; file:// is a local path); endpoint
and credentials come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
..., or FSSPEC_S3_ENDPOINT_URL). An output URL is built locally, then uploaded
with report.html last (removed first when replacing an earlier one): there is no
writer lock for URLs. If one analysis cannot
run (e.g. a class without noisy probes), the others still do and the report
says what failed and why. The summary and the findings table are also printed (100 columns).
"""

COMPARE_EPILOG = f"""\
examples:
  actlab compare runs/mlp3 runs/mlp5 runs/mlp7
  actlab compare runs/mlp7-seed0 runs/mlp7-seed1 --out runs/compare-seeds
  actlab compare s3://bucket/runs/mlp7 runs/mlp7-local --scheduler local:2
  actlab compare runs/mlp7 runs/mlp5 --extra memorisation
                       also the noisy probes memorised early vs late in every run (every seed
                       of an ensemble): tables per run and layer, a figure with the null's band,
                       results.zarr/memorisation
  actlab compare runs/mlp7-seed0 runs/mlp7-seed1 --extra cka
                       the CKA between runs is required: a run on other probes than the first is
                       refused (exit 2) instead of left out with a note

what is written (into {DEFAULT_COMPARE_DIR}/ unless --out DIR):
  report.html          one self-contained report: comparison table of the headline findings,
                       overlaid test-loss curves, separation per run, and the debiased linear
                       CKA of each layer of each run with the same layer of the first run at
                       every epoch both recorded (runs on other probes are skipped with a note;
                       refused with --extra cka)
  summary.json         the headline numbers of every run, keyed by run
  table.md             the comparison table in Markdown, to paste into a document
  results.zarr/        node cka_between (the CKA of each run with the first: one child per run,
                       cka_same (epoch, layer) and cka (epoch, layer, layer_other)); with
                       --extra memorisation also node memorisation, one child per run
                       (reload with actlab.analysis.load_results)
  figures/NAME.png     the comparison figures (--format)

Analysis results already saved under RUN/{ANALYSIS_DIRNAME}/ are reused when they are
up to date with the run store; otherwise they are computed (and not saved into
the run: use 'actlab analyze RUN' for that).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` and ``compare`` subcommands."""
    analyze = subparsers.add_parser(
        "analyze",
        help="compute every analysis of a run; write figures, summary.json and report.html",
        description=(
            "Compute every analysis of a recorded run (double-descent phases, clean/noisy signal separation,\n"
            "class-mean PCA trajectories, the large activation and its input-vs-output explanation, path\n"
            "attribution) and write the results, figures and a self-contained HTML report."
        ),
        epilog=ANALYZE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("run", metavar="RUN", help="run directory (runs/<name>, holding store.zarr) or run URL")
    analyze.add_argument("--out", metavar="DIR", default=None, help=f"output directory or URL (default: RUN/{ANALYSIS_DIRNAME})")
    _add_common(analyze)
    analyze.add_argument("--open", action="store_true", help="open report.html in the default web browser when done")
    analyze.add_argument(
        "--extra", metavar="NAMES", default="",
        help="optional analyses, comma-separated: probes (linear probes of every layer and epoch: original and "
             "assigned label of the noisy probes), cka (debiased linear CKA of every layer to its final state and "
             "between layers; for an ensemble also each seed with the first, layer by layer at every epoch), "
             "memorisation (separation and path split of the noisy probes memorised early against late, from the "
             "per-sample trajectories); probes and cka are computed in the same pass over the store and the probes "
             "cost more CPU per block than the rest of the analysis together (default: none)")
    analyze.add_argument(
        "--probe-epochs", metavar="N", default=None,
        help="with --extra probes: probe this many recorded epochs of each layer at most (the first, the phase epochs "
             "the findings are read at, the rest evenly spaced up to the last), or 'all' for every recorded epoch; "
             "the report and results name the epochs probed (default: 16, actlab.analysis.probes.PROBE_EPOCHS)")
    analyze.set_defaults(func=run_analyze)

    compare = subparsers.add_parser(
        "compare",
        help="put several runs side by side in one report",
        description="Compare the headline findings, test-loss curves and signal separation of several runs\nin one report.",
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("runs", metavar="RUN", nargs="+", help="run directories or URLs to compare, in the order to show them")
    compare.add_argument("--out", metavar="DIR", default=str(DEFAULT_COMPARE_DIR), help=f"output directory or URL (default: {DEFAULT_COMPARE_DIR})")
    _add_common(compare)
    compare.add_argument("--open", action="store_true", help="open report.html in the default web browser when done")
    compare.add_argument("--no-cka", dest="cka", action="store_false",
                         help="skip the debiased linear CKA of each run with the first (it reads every activation "
                              "block of each run once more)")
    compare.add_argument(
        "--extra", metavar="NAMES", default="",
        help="optional analyses of every run: memorisation (separation and path split of the noisy probes memorised "
             "early against late, from the per-sample trajectories; it reads every activation block of each run "
             "once more); cka (the debiased linear CKA of each run with the first, computed by default, made "
             "required: a run on other probes than the first is refused in one line, exit 2, instead of left out "
             "with a note); probes is per run: use 'actlab analyze RUN --extra probes' (default: none)")
    compare.set_defaults(func=run_compare)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler", metavar="ADDRESS", default=None,
        help="dask.distributed scheduler address, e.g. tcp://host:8786, whose workers see RUN at the same path or URL; "
             "or local:N to start a local cluster of N worker processes for this command (default: local threads)",
    )
    parser.add_argument("--no-progress", action="store_true",
                        help="show no progress (default: a bar on a terminal, a line every few seconds in a pipe or log)")
    parser.add_argument("--format", metavar="FMTS", default="png,svg", help="figure formats, comma-separated subset of png,svg (default: png,svg)")


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def run_analyze(args: argparse.Namespace) -> int:
    """Run ``actlab analyze``."""
    from actlab.abstract import finding_rows, summary_sentences
    from actlab.findings import TERMINAL_WIDTH, text_table
    from actlab.workflow import analyze_to_dir, parse_formats

    formats = parse_formats(args.format)
    extras = _extras(args.extra)
    probe_epochs = {} if args.probe_epochs is None else {"probe_epochs": _probe_epochs(args.probe_epochs, extras)}
    _check_open(args, args.out or args.run)
    output = analyze_to_dir(args.run, args.out, formats=formats, progress=_progress(args), scheduler=args.scheduler,
                            extras=[name for name in extras if name != JOINED], memorisation=JOINED in extras,
                            **probe_epochs)
    rows = finding_rows(output.report.findings)
    for sentence in summary_sentences(output.report.findings):
        print(textwrap.fill(sentence.replace("*", ""), TERMINAL_WIDTH, subsequent_indent="  "))
    print()
    print(text_table(["finding", "value", "verdict"], [[row.name, row.value, row.verdict] for row in rows]))
    return _close(output, args)


def _probe_epochs(value: str, extras: list[str]) -> int | None:
    """``--probe-epochs``: an integer >= 2, or ``all`` (None: every recorded epoch); only with ``--extra probes``."""
    from actlab.errors import ConfigError

    if "probes" not in extras:
        raise ConfigError("--probe-epochs sets the epochs of the linear probes; add --extra probes")
    if value.strip().lower() == "all":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 2:
        raise ConfigError(f"--probe-epochs must be an integer >= 2 or 'all'; got {value!r}")
    return number


JOINED = "memorisation"
"""The ``--extra`` name of the joined analysis (:func:`actlab.workflow.with_memorisation`), run after the others."""


def _extras(names: str) -> list[str]:
    """The names of ``--extra``, checked against :data:`actlab.analysis.pipeline.EXTRAS` and :data:`JOINED`."""
    from actlab.analysis.pipeline import EXTRAS
    from actlab.errors import ConfigError

    known = [*EXTRAS, JOINED]
    given = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ConfigError(f"--extra names unknown analyses {unknown}; choose from {','.join(known)}")
    return given


COMPARE_EXTRAS = (JOINED, "cka")
"""The names ``compare --extra`` takes: the joined analysis of every run and the CKA between runs."""


def _compare_extras(names: str) -> list[str]:
    """The names of ``compare --extra``: :data:`COMPARE_EXTRAS` (the linear probes belong to ``actlab analyze``)."""
    from actlab.errors import ConfigError

    given = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in given if name not in COMPARE_EXTRAS]
    if unknown:
        raise ConfigError(f"compare --extra names analyses it does not offer {unknown}; choose from "
                          f"{','.join(COMPARE_EXTRAS)} (probes is per run: actlab analyze RUN --extra probes)")
    return given


def _check_open(args: argparse.Namespace, out: str) -> None:
    """Refuse ``--open`` for an output URL (a browser cannot open it)."""
    from actlab.errors import ConfigError
    from actlab.location import is_remote, location

    if args.open and is_remote(location(out)):
        raise ConfigError(f"--open needs a local report, but the output goes to {out}; drop --open or give a local --out")


def _close(output: Any, args: argparse.Namespace) -> int:
    """Warn about failed analyses, name the report, open it when asked; the exit code."""
    for name, reason in output.report.failures.items():
        print(f"warning: {name} failed: {reason}", file=sys.stderr)
    for name, reason in dict(output.summary.get("skipped") or {}).items():
        print(f"note: {name} skipped: {reason}", file=sys.stderr)
    print(f"\nreport: {output.report_path}")
    if args.open:
        webbrowser.open(output.report_path.resolve().as_uri())
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Run ``actlab compare``."""
    from actlab.findings import text_table
    from actlab.workflow import compare_to_dir, parse_formats

    formats = parse_formats(args.format)
    extras = _compare_extras(args.extra)
    _check_open(args, args.out)
    output = compare_to_dir(args.runs, args.out, formats=formats, progress=_progress(args), scheduler=args.scheduler,
                            cka=args.cka, memorisation=JOINED in extras, strict_cka="cka" in extras)
    for title, header, rows in output.report.tables:
        print(f"{title}\n{text_table(header, rows)}\n")
    for note in output.report.notes:
        print(f"note: {note}", file=sys.stderr)
    return _close(output, args)

