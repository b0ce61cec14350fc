"""``actlab record``: train a model and record its activations (thin over :func:`actlab.record.record`)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from actlab.errors import ConfigError
from actlab.record.config import (
    AUGMENTATIONS,
    BUILTIN_MODELS,
    CONV_REDUCTIONS,
    DATASETS,
    DEVICES,
    DTYPES,
    NOISE_MODES,
    NORMALIZATIONS,
    RecordConfig,
    load_toml,
)

D = {f.name: f.default for f in fields(RecordConfig)}

EPILOG = """\
examples:
  actlab record --model mlp7                          MLP7 on CIFAR-10, 30% label noise -> runs/mlp7
  actlab record --dataset digits --model mlp3 --epochs 100
                                                      offline quick start on scikit-learn's digits
  actlab record --model mlp5 --width 1024,512,512,256 --noise 0.2 --out runs/mlp5-w1024
  actlab record --config run.toml --seed 3            settings from a TOML file, flags override it
  actlab record --dataset digits --seeds 0-7          8 seeds at once, one process -> runs/mlp7-digits/seed0..seed7
  actlab record --resume runs/mlp7                    continue an interrupted run from its checkpoint
  actlab record --model resnet18k --width 16 --augment crop-flip --noise 0.2
                                                      the pre-activation ResNet18 of width k=16 (Nakkiran et al. 2019)
  actlab record --model mypkg.nets:make_net --model-args '{"width": 64}' --dataset digits
                                                      your own nn.Module from a factory; resume it with
                                                      --resume RUN --model mypkg.nets:make_net (named again)

data: CIFAR-10 binary files are looked up in --data-dir, else $ACTLAB_DATA, else ./data
(folder holding cifar-10-batches-bin/); without them torchvision downloads the python version there.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``record`` subcommand to the ``actlab`` parser."""
    parser = subparsers.add_parser(
        "record",
        help="train a model and record its activations into a run store",
        description="Train a model with Adam and cross-entropy on noisy labels. Loss and accuracy are stored every\n"
                    "epoch; at the scheduled epochs the pre-activations of every layer for fixed probe samples and\n"
                    "the weights are stored too, all in runs/<name>/store.zarr.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )

    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="TOML", help="read settings from a TOML file (keys = flag names with underscores); flags override it")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint with its stored settings "
                     "(only --device and --progress may change); a run of a factory model resumes only when --model "
                     "names the same factory again, so that no code a store names is run unasked")
    run.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model> for cifar10, runs/<model>-<dataset> otherwise)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run directory (default: refuse)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction,
                     help="progress with epoch, losses and time left: a bar on a terminal, a line every few seconds "
                          "in a pipe or log (default: on)")

    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="MODEL", help=f"{', '.join(BUILTIN_MODELS)}: MLPs with 2, 4 or 6 hidden ReLU layers, "
                       "the five-layer CNN and the pre-activation ResNet18 of Nakkiran et al. 2019; or a factory "
                       "package.module:callable returning an nn.Module, called with --model-args and rebuilt by --resume when named again "
                       f"(default: {D['model']}, the deepest MLP of the study)")
    model.add_argument("--model-args", metavar="JSON", help="keyword arguments of a factory --model, a JSON object, e.g. '{\"width\": 64}' (default: none)")
    model.add_argument("--width", metavar="N[,N...]", help=f"MLP hidden width, one value or one per hidden layer; k of cnn5 and resnet18k "
                       f"(channels k, 2k, 4k, 8k) (default: {D['width']}; a CIFAR-10 pilot of MLP7 memorised the noisy labels "
                       "within ~50 epochs at this width, the paper leaves it unstated)")
    model.add_argument("--layers", metavar="NAMES", help="modules to record: 'auto' (every activation module, ReLU, GELU, ...; "
                       "every residual or transformer block without such modules; every Linear and Conv where the model has "
                       "neither; and the last module; it prints what it chose and why) or a comma list of qualified module "
                       "names; a layer is named after its module, with the class appended to a Sequential child's name "
                       "(2.relu) (default: an MLP's hidden and output Linears, auto for other models)")
    model.add_argument("--conv-reduce", choices=list(CONV_REDUCTIONS), help="a recorded output with dims (channel, y, x) is reduced "
                       "over (y, x) per channel at capture time (mean, max), or stored whole with dims (epoch, sample, channel, "
                       f"y, x) (none); the analyses take a channel as the unit either way (default: {D['conv_reduce']})")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=list(DATASETS), help=f"cifar10: the study's data; digits: scikit-learn's bundled 8x8 digits "
                      f"(offline, 20%% held out per class); synthetic: generated patterns for tests (default: {D['dataset']})")
    data.add_argument("--data-dir", metavar="DIR", help="folder holding cifar-10-batches-bin/ (default: $ACTLAB_DATA, else ./data)")
    data.add_argument("--download", action=argparse.BooleanOptionalAction, help="let torchvision download CIFAR-10 into --data-dir when absent (default: on)")
    data.add_argument("--synthetic", metavar="SPEC", help="synthetic dataset parameters, e.g. 'train=1000,test=500,classes=10,shape=3x8x8,seed=0' (those are the defaults)")
    data.add_argument("--train-size", type=int, metavar="N", help="seeded class-stratified training subset of N samples (default: all)")
    data.add_argument("--test-size", type=int, metavar="N", help="seeded class-stratified test subset of N samples, evaluated every epoch "
                      "(default: all; evaluation of the 10,000 CIFAR-10 test images dominates the epoch time of small training subsets on a CPU)")
    data.add_argument("--noise", type=float, metavar="RATE", help=f"fraction of training labels replaced, exactly round(RATE*N) samples, class-stratified (default: {D['noise']}, the study's setting)")
    data.add_argument("--noise-mode", choices=list(NOISE_MODES), help=f"other: new label uniform over the other classes; uniform: over all classes, so about one drawn label "
                      f"in CLASSES is the original one and stays clean: the realised noise rate is below RATE, about "
                      f"RATE*(1-1/CLASSES); only changed labels count as noisy (default: {D['noise_mode']})")
    data.add_argument("--normalize", choices=list(NORMALIZATIONS), help=f"channel: subtract per-channel mean and divide by std of the TRAINING images; none: raw [0,1] pixels (default: {D['normalize']})")

    train = parser.add_argument_group("training")
    train.add_argument("--augment", choices=list(AUGMENTATIONS), help="crop-flip: a random crop with 4 pixels of padding and a "
                       f"horizontal flip of every training batch, on the device, as Nakkiran et al. 2019 (default: {D['augment']})")
    train.add_argument("--epochs", type=int, help=f"training epochs; metrics are stored for epochs 0 (initialisation) to EPOCHS (default: {D['epochs']}, "
                       "enough for a 10,000-image CIFAR-10 pilot of MLP7 to memorise every noisy label, which took 53 epochs)")
    train.add_argument("--batch-size", type=int, help=f"mini-batch size (default: {D['batch_size']})")
    train.add_argument("--lr", type=float, help=f"Adam learning rate (default: {D['lr']})")
    train.add_argument("--betas", metavar="B1,B2", help="Adam betas (default: 0.9,0.999)")
    train.add_argument("--weight-decay", type=float, help=f"Adam weight decay (default: {D['weight_decay']})")
    train.add_argument("--seed", type=int, help=f"seed of initialisation and batch order, and of subset, noise and probes unless --data-seed (default: {D['seed']})")
    train.add_argument("--seeds", metavar="SEEDS", help="train one replica per seed at once, as one vectorised ensemble: '0-7', "
                       "'0,1,5' or '0-3,8'; each is written as a run RUN/seed<S>/ equal to --seed S --data-seed D "
                       "(D: --data-seed, else the first seed); not with --seed (default: one run)")
    train.add_argument("--data-seed", type=int, metavar="N", help="seed of the subset, noise and probe draws, apart from "
                       "initialisation and batch order (default: --seed, or the first of --seeds)")
    train.add_argument("--noise-per-seed", action="store_true", help="with --seeds: draw each replica's subset, noise and "
                       "probes from its own seed instead of sharing the data (default: shared)")
    train.add_argument("--device", choices=list(DEVICES), help=f"auto picks cuda, then mps, then cpu (default: {D['device']}); only the CPU is bit-reproducible")
    train.add_argument("--eval-batch-size", type=int, help=f"batch size of evaluation and probe forwards (default: {D['eval_batch_size']})")
    train.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction,
                       help="on a CUDA device, replay each training step from a CUDA graph: same updates, "
                            "no per-kernel launch cost (default: on)")
    train.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction,
                       help="on a CPU, flush denormal floats (below 1.2e-38) to zero: once the training loss falls "
                            "below ~1e-8 the gradients are denormal and made each step 3x slower; benchmarks/bench_denormal.py (default: on)")

    rec = parser.add_argument_group("recording")
    rec.add_argument("--record-epochs", metavar="SCHEDULE", help=f"epochs to record: '0,1,5,10', 'every:K' (plus the last epoch) or 'log:N' "
                     f"(N epochs geometrically spaced from 0 to the last) (default: {D['record_epochs']}: dense early, where the first "
                     "test-loss minimum and the memorisation peak sit)")
    for group in ("clean", "noisy", "test"):
        rec.add_argument(f"--probe-{group}", type=int, metavar="N", help=f"{group} probe samples, class-stratified (default: 1000, "
                         "clipped to what is available; a larger explicit N is an error)")
    rec.add_argument("--dtype", choices=list(DTYPES), help=f"storage type of the recorded pre-activations (default: {D['dtype']})")
    rec.add_argument("--checkpoint-every", type=int, metavar="K", help=f"checkpoint every K epochs and at the last; 0: at the recorded epochs instead; "
                     f"--resume continues from the latest checkpoint (default: {D['checkpoint_every']})")
    parser.set_defaults(func=run_record)
    return parser


SETTING_NAMES = {f.name for f in fields(RecordConfig)}
RESUME_CHANGEABLE = {"device", "progress"}
RESUME_CONFIRMED = {"model"}
"""Settings --resume takes from the run but the user may (for a factory model: must) give again, the same."""


def config_from_args(args: argparse.Namespace) -> RecordConfig:
    """Defaults, then the ``--config`` TOML file, then the flags given on the command line."""
    given = {name: value for name, value in vars(args).items() if name in SETTING_NAMES}
    if "seed" in given and "seeds" in given:
        raise ConfigError("--seed and --seeds exclude each other; give --seeds alone (each replica takes its seed from it)")
    settings: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            settings.update(load_toml(args.config))
        except OSError as exc:  # a folder, unreadable; a missing file is load_toml's ConfigError
            raise ConfigError(f"config file {args.config} cannot be read ({exc.strerror}); give a readable TOML file") from None
        RecordConfig.from_dict(settings, strict=True, where=f"config file {args.config}")
    settings.update(given)
    return RecordConfig.from_dict(settings, strict=True)


def run_record(args: argparse.Namespace) -> int:
    """Run ``actlab record`` from parsed arguments; returns the exit code."""
    from actlab.record import require_torch

    require_torch()
    from actlab.record import api

    if getattr(args, "resume", None):
        extra = sorted(name for name in vars(args) if name in SETTING_NAMES - RESUME_CHANGEABLE - RESUME_CONFIRMED or name == "config")
        if extra:
            raise ConfigError(f"--resume takes its settings from the run; drop {', '.join('--' + n.replace('_', '-') for n in extra)}")
        api.resume(args.resume, model=getattr(args, "model", None), device=getattr(args, "device", None),
                   progress=getattr(args, "progress", None))
        print(args.resume)
        return 0
    run_dir = api.record(config_from_args(args))
    print(run_dir)
    return 0
