"""Options several `keras-guide` commands share, as named argument groups
(the student's size, GUIDE's options, text, the training budget,
distillation, outputs), the argparse types that check numbers and sizes, and
what the options become (sizes, GUIDE options, KD settings)."""

import argparse
import math
import re

from keras_guide.gguf.dtypes import DTYPES as GGUF_DTYPES
from keras_guide.guide import options as guide_options_lib
from keras_guide.workflows import export
from keras_guide.workflows import inputs

BACKENDS = ("jax", "tensorflow", "torch")
# The student's sizes, by the generic names `keras_guide.build_student` takes.
SIZE_NAMES = (
    "hidden_dim",
    "num_layers",
    "num_heads",
    "num_key_value_heads",
    "intermediate_dim",
    "head_dim",
)
GUIDE_OPTIONS = (
    "blocks",
    "layer_map",
    "projection",
    "center",
    "norm",
    "select",
    "rescale",
)
# The distillation options, by the names `Distiller` takes.
KD_OPTIONS = ("temperature", "student_loss_weight", "top_k", "targets_from")
# What a student is also written as (it is always a .keras file).
EXPORT_FORMATS = tuple(kind for kind in export.FORMATS if kind != "keras")

# A mistake on the command line, answered with its message alone.
UsageError = inputs.InputError


def number(kind, low, strict, upper=None):
    """An argparse type: a finite `kind` ≥ `low` (> `low` if `strict`), ≤ `upper`."""
    bound = f"> {low}" if strict else f"≥ {low}"
    if upper is not None:
        bound += f" and ≤ {upper}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (
            value is None
            or not math.isfinite(value)
            or value < low
            or (strict and value == low)
            or (upper is not None and value > upper)
        ):
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'} {bound}. "
                f"Received: {text!r}"
            )
        return value

    parse.__name__ = kind.__name__
    return parse


POSITIVE_INT = number(int, 0, strict=True)
POSITIVE = number(float, 0.0, strict=True)
COUNT = number(int, 0, strict=False)

_UNITS = {"kib": 2**-10, "k": 2**-10, "mib": 1.0, "m": 1.0, "gib": 2**10, "g": 2**10}


def mebibytes(text):
    """An argparse type: `300MiB`, `1.5GiB`, `300M` as MiB (a bare number:
    MiB)."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and (match.group(2).lower() or "mib")
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"must be a size such as 300MiB or 1.5GiB. Received: {text!r}"
        )
    value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0. Received: {text!r}")
    return value


def model_help():
    """What a model argument takes, for `--help`: files, folders and the
    resolver's names (`workflows.inputs.model_names`)."""
    return (
        "a .gguf file, a .keras file, a KerasHub preset folder, a Hugging Face "
        f"folder or one of {', '.join(inputs.model_names())}"
    )


def given(args, names):
    """`{name: value}` of the options among `names` that were given."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def guide_options_of(args, calibrated=None):
    """The GUIDE options given on the command line, as `guide()`'s keyword
    arguments, checked as a `GuideOptions` before any model loads.

    Args:
        args: argparse.Namespace. The command's arguments.
        calibrated: bool or `None`. Whether calibration text comes with
            them; `None` when the options decide (`takes_calibration`, as
            compress's search does). Defaults to `None`.

    Raises:
        UsageError: an option of the wrong value, or one that needs
            calibration text the command does not take.
    """
    options = given(args, GUIDE_OPTIONS)
    if calibrated is None:
        calibrated = guide_options_lib.takes_calibration(options)
    try:
        guide_options_lib.GuideOptions(**options, calibrated=calibrated)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return options


def add_teacher(parser):
    """The teacher, the first argument as in every command; `--teacher`, the
    older spelling, is still accepted (hidden from `--help`)."""
    parser.add_argument("teacher", nargs="?", default=None, help=model_help())
    parser.add_argument("--teacher", dest="teacher_flag", help=argparse.SUPPRESS)


def teacher_of(args):
    """The teacher named by `add_teacher`'s argument or its older flag.

    Raises:
        UsageError: neither or two different teachers are given.
    """
    given_ = {t for t in (args.teacher, args.teacher_flag) if t is not None}
    if len(given_) != 1:
        raise UsageError(
            f"{args.command}: pass one teacher, as the first argument (a model "
            f"file, folder or name). Received: {sorted(given_) or 'none'}"
        )
    return given_.pop()


def add_sizes(parser):
    group = parser.add_argument_group("the student's size (the family's generic names)")
    for name in SIZE_NAMES:
        group.add_argument(
            "--" + name.replace("_", "-"), type=POSITIVE_INT, default=None, dest=name
        )


def add_guide_options(parser, calibration=True):
    """GUIDE's options; with `calibration`, `--calibration` text too.

    Returns:
        The argument group.
    """
    from keras_guide.guide import options

    group = parser.add_argument_group("GUIDE options (keras_guide.guide)")
    group.add_argument("--blocks", choices=options.BLOCKS, default=None)
    group.add_argument("--layer-map", choices=options.LAYER_MAPS, default=None)
    group.add_argument("--projection", choices=options.PROJECTIONS, default=None)
    group.add_argument("--center", action="store_true", default=None)
    group.add_argument("--norm", choices=options.NORMS, default=None)
    group.add_argument(
        "--select",
        choices=options.SELECTS,
        default=None,
        help="how heads and neurons are kept",
    )
    group.add_argument(
        "--no-rescale",
        action="store_false",
        default=None,
        dest="rescale",
        help="keep the teacher's magnitudes as they are (no width ratios)",
    )
    if calibration:
        group.add_argument(
            "--calibration",
            nargs="+",
            default=None,
            help=".txt files or folders: the data-aware recipe (channels, "
            "importance units and block map; options given here "
            "are kept), in the teacher's tokens",
        )
    group.add_argument(
        "--calibration-tokens",
        type=POSITIVE_INT,
        default=4096,
        help="tokens of the calibration text to use, default 4096",
    )
    return group


def add_text(parser, text_help, eval_help, sequence_length=None, tokenizer=True):
    """`--text`, `--eval` (also spelled `--held-out`), `--sequence-length`
    and, with `tokenizer`, `--tokenizer`.

    Returns:
        The argument group.
    """
    group = parser.add_argument_group("text")
    group.add_argument("--text", nargs="+", required=True, help=text_help)
    group.add_argument("--eval", nargs="+", default=None, help=eval_help)
    # The name `distill` and `compare` gave `--eval` before, kept working.
    group.add_argument("--held-out", nargs="+", dest="eval", help=argparse.SUPPRESS)
    if tokenizer:
        group.add_argument(
            "--tokenizer",
            default="auto",
            help="'auto' (the teacher's), 'demo', or a folder with "
            "vocabulary.json and merges.txt",
        )
    group.add_argument(
        "--sequence-length",
        type=number(int, 2, strict=False),
        default=sequence_length,
        help=f"tokens per window, default {sequence_length}"
        if sequence_length
        else "tokens per window (default: the model's context, at most 128)",
    )
    return group


def add_budget(parser, steps, batch_size, learning_rate, checkpoint_every=None):
    """`--steps`, `--batch-size`, `--learning-rate` and, given a default,
    `--checkpoint-every`.

    Returns:
        The argument group.
    """
    group = parser.add_argument_group("training budget")
    group.add_argument(
        "--steps", type=POSITIVE_INT, default=steps, help=f"default {steps}"
    )
    group.add_argument(
        "--batch-size",
        type=POSITIVE_INT,
        default=batch_size,
        help=f"default {batch_size}",
    )
    group.add_argument(
        "--learning-rate",
        type=POSITIVE,
        default=learning_rate,
        help=f"peak AdamW learning rate, default {learning_rate}",
    )
    if checkpoint_every is not None:
        group.add_argument(
            "--checkpoint-every",
            type=POSITIVE_INT,
            default=checkpoint_every,
            help=f"steps between checkpoints, default {checkpoint_every}",
        )
    return group


def add_seed(group, help):
    group.add_argument("--seed", type=COUNT, default=0, help=f"{help}; default 0")


def add_distillation(parser):
    """The KD options (`KD_OPTIONS`); those not given keep the recipe
    (`kd_of`).

    Returns:
        The argument group.
    """
    group = parser.add_argument_group("distillation")
    group.add_argument(
        "--temperature",
        type=POSITIVE,
        default=None,
        help="τ of the KD term (default 1.0, measured best on SmolLM2)",
    )
    group.add_argument(
        "--student-loss-weight",
        default=None,
        type=number(float, 0.0, strict=False, upper=1.0),
        help="α: loss = α·CE + (1 − α)·τ²·KL (default 0.5)",
    )
    group.add_argument(
        "--top-k",
        type=POSITIVE_INT,
        default=None,
        help="distil from the teacher's top-k logits per token, "
        "stored once per window (its tail kept as one class), "
        "instead of the live teacher's full distribution",
    )
    group.add_argument(
        "--targets-from",
        choices=("keras", "llama.cpp"),
        default=None,
        help="compute the --top-k targets once, before training, "
        "with the Keras teacher or (a .gguf teacher) llama.cpp "
        "itself, into OUT/teacher_targets/, read from disk "
        "while training (--resume reuses them); default: in "
        "memory, from the Keras teacher, as each window is "
        "first used",
    )
    return group


def kd_of(args):
    """The KD recipe measured best on a real teacher (`run.RECIPE`), with
    the distillation options given."""
    from keras_guide.workflows import run

    return {**run.RECIPE, **given(args, KD_OPTIONS)}


def budget_of(args, kd, **overrides):
    """The `run.Budget` of the training-budget options, with the KD setting
    `kd` (`None`: cross-entropy alone) and the `Budget` fields `overrides`."""
    from keras_guide.workflows import run

    options = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
    }
    return run.Budget(kd=kd, **{**options, **overrides})


def add_outputs(parser, help, **out):
    """`--out` (with `help` and argparse's `out` keywords), `--overwrite`,
    and `--debug` (also accepted before the command).

    Returns:
        The argument group.
    """
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    group = parser.add_argument_group("outputs")
    group.add_argument("--out", help=help, **out)
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what a previous run wrote to --out",
    )
    return group


def add_gguf_dtype(group, default="float32", several=False, dtype_help=None):
    """`--gguf-dtype`: one of the GGUF types, or with `several` a list."""
    group.add_argument(
        "--gguf-dtype",
        nargs="+" if several else None,
        default=[default] if several else default,
        choices=GGUF_DTYPES,
        metavar="DTYPE",
        help=(dtype_help or "tensor type of the .gguf file")
        + f", default {default}; any of {', '.join(GGUF_DTYPES)}",
    )


def add_exports(group, help, **dtype):
    """`--export` (the formats the student is also written in) and
    `--gguf-dtype` (`add_gguf_dtype`'s `dtype` keywords)."""
    group.add_argument(
        "--export", nargs="+", choices=EXPORT_FORMATS, default=(), help=help
    )
    add_gguf_dtype(group, **dtype)
