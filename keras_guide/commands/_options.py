"""Options shared by several `keras-guide` commands: number parsing, the
student's sizes, GUIDE's options, the training budget, exports, text."""

import argparse
import math

from keras_guide.gguf.dtypes import DTYPES as GGUF_DTYPES

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


def add_sizes(parser):
    group = parser.add_argument_group("student shape (the family's generic names)")
    for name in SIZE_NAMES:
        group.add_argument(
            "--" + name.replace("_", "-"), type=POSITIVE_INT, default=None, dest=name
        )


def student_sizes(args):
    return {k: getattr(args, k) for k in SIZE_NAMES if getattr(args, k) is not None}


def add_guide_options(parser, calibration=True):
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
    if not calibration:
        return
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
        help="tokens of --calibration to use, default 4096",
    )


def guide_options_of(args):
    return {k: getattr(args, k) for k in GUIDE_OPTIONS if getattr(args, k) is not None}


def add_budget(parser, steps, batch_size, learning_rate):
    parser.add_argument(
        "--steps", type=POSITIVE_INT, default=steps, help=f"default {steps}"
    )
    parser.add_argument(
        "--batch-size",
        type=POSITIVE_INT,
        default=batch_size,
        help=f"default {batch_size}",
    )
    parser.add_argument(
        "--learning-rate",
        type=POSITIVE,
        default=learning_rate,
        help=f"peak AdamW learning rate, default {learning_rate}",
    )


def add_export_options(parser):
    group = parser.add_argument_group("export (where the student runs next)")
    group.add_argument(
        "--export",
        nargs="+",
        choices=("gguf", "preset", "hf"),
        default=(),
        help="also write the student as a llama.cpp .gguf file, "
        "a KerasHub preset folder and/or a Hugging Face "
        "folder (transformers), next to it",
    )
    group.add_argument(
        "--gguf-dtype",
        default="float32",
        choices=GGUF_DTYPES,
        help="tensor type of the .gguf file, default float32",
    )


def add_common(parser):
    """`--debug` (also accepted before the command) and `--overwrite`."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what a previous run wrote to --out",
    )


def add_text(parser):
    parser.add_argument(
        "--text",
        nargs="+",
        required=True,
        help=".txt files or folders (searched recursively)",
    )
    parser.add_argument(
        "--held-out",
        nargs="+",
        default=None,
        help="held-out .txt files or folders (default: every tenth "
        "file, or the last 10%% of each file)",
    )
    parser.add_argument(
        "--tokenizer",
        default="auto",
        help="'auto' (the teacher's), 'demo', or a folder with "
        "vocabulary.json and merges.txt",
    )
    parser.add_argument(
        "--sequence-length", type=number(int, 2, strict=False), default=None
    )


def add_top_k(parser):
    parser.add_argument(
        "--top-k",
        type=POSITIVE_INT,
        default=None,
        help="distil from the teacher's top-k logits per token, "
        "stored once per window (its tail kept as one class), "
        "instead of the live teacher's full distribution",
    )
    parser.add_argument(
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
