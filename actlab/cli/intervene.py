"""``actlab intervene``: rewind layers or ablate units of a recorded run (thin over :mod:`actlab.record.intervene`)."""

from __future__ import annotations

import argparse
import sys

from actlab.store import ANALYSIS_DIRNAME

EPILOG = f"""\
examples:
  actlab intervene runs/mlp7 --rewind hidden6@40              the last hidden layer back to its epoch-40 weights
  actlab intervene runs/mlp7 --rewind hidden6@40 --rewind hidden5,hidden6@40
                                                              one row per --rewind
  actlab intervene runs/mlp7 --ablate                          zero the large unit of each hidden layer, against
                                                              20 draws of random units of matched mean activation
  actlab intervene runs/net --model mypkg.nets:make_net --ablate
                                                              a factory run: name the same factory again

what is measured: accuracy on the stored probes, clean, noisy against their assigned and
their original label, and test, with the weights of --epoch (default: the last recorded)
and each intervention applied; with --test-set also on every test sample the run evaluated.

what is written: the folder RUN/{ANALYSIS_DIRNAME}/interventions (run 'actlab analyze RUN' first: it
replaces RUN/{ANALYSIS_DIRNAME} as a whole), or --out DIR, holding interventions.zarr (read it with
actlab.analysis.load_results) and the figure interventions.png. The table is printed too.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``intervene`` subcommand."""
    parser = subparsers.add_parser(
        "intervene",
        help="rewind layers or ablate units of a recorded run; accuracy on the stored probes",
        description="Rebuild a run's model from its stored weights, rewind layers to an earlier recorded epoch or\n"
                    "zero units, and measure the accuracy on the stored probes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run directory (runs/<name>, holding store.zarr)")
    parser.add_argument("--epoch", type=int, default=None, help="recorded epoch whose weights are used (default: the last)")
    parser.add_argument("--rewind", metavar="LAYERS@EPOCH", action="append", default=[],
                        help="layers (recorded layer or module names, comma-separated) that take their weights of the "
                             "recorded EPOCH; repeat for several interventions")
    parser.add_argument("--ablate", action="store_true",
                        help="zero the unit of largest mean |activation| of each hidden layer, and as its null "
                             "random units of matched mean activation")
    parser.add_argument("--null-draws", type=int, default=20, metavar="N", help="draws of matched random units (default 20)")
    parser.add_argument("--model", metavar="PKG.MODULE:CALLABLE", default=None,
                        help="the factory of a factory run, named again (a name read from the store is never imported)")
    parser.add_argument("--test-set", action="store_true",
                        help="also measure every evaluated test sample of the run (loads the run's data again and checks "
                             "it is the same)")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="where the run's data are now, with --test-set (default: as the run was recorded)")
    parser.add_argument("--device", default="cpu", help="torch device of the forward passes (default cpu)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help=f"output folder (default RUN/{ANALYSIS_DIRNAME}/interventions)")
    parser.set_defaults(func=run_intervene)


def run_intervene(args: argparse.Namespace) -> int:
    """Run ``actlab intervene``."""
    from actlab.errors import ConfigError
    from actlab.findings import text_table
    from actlab.plots import plot_interventions
    from actlab.report import figure_png
    from actlab.record.intervene import Rewind, intervene, save_interventions
    from actlab.record.models import load_factory

    if not args.rewind and not args.ablate:
        raise ConfigError("nothing to do; give --rewind LAYERS@EPOCH and/or --ablate")
    rewinds = [Rewind.parse(text) for text in args.rewind]
    factory = load_factory(args.model) if args.model else None
    ds = intervene(args.run, epoch=args.epoch, rewind=rewinds, ablate=args.ablate, n_null=args.null_draws,
                   factory=factory, device=args.device, test_set=args.test_set, data_dir=args.data_dir)
    path = save_interventions(ds, args.run, args.out, figure_png=figure_png(plot_interventions(ds)))
    measures = [str(m) for m in ds["measure"].values]
    rows = [["none", *(f"{v:.3f}" for v in ds["baseline_accuracy"].values)]]
    if "rewind" in ds.coords:
        rows += [[f"rewind {r}", *(f"{v:.3f}" for v in ds["rewind_accuracy"].sel(rewind=r).values)]
                 for r in ds["rewind"].values]
    if "ablate_accuracy" in ds:
        for layer in ds["layer"].values:
            at = ds.sel(layer=layer)
            rows.append([f"ablate {layer} unit {int(at['ablated_unit'])}", *(
                f"{a:.3f} (null {n:.3f}, p = {p:.2g})" for a, n, p in zip(
                    at["ablate_accuracy"].values, at["null_accuracy"].mean("draw").values, at["ablate_p_value"].values))])
    print(f"accuracy at epoch {ds.attrs['epoch']}:")
    print(text_table(["intervention", *measures], rows))
    print(f"\nresults: {path}", file=sys.stderr)
    return 0
