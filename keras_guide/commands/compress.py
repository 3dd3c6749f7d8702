"""`keras-guide compress`: a checkpoint and a size to a trained, measured
student (or a ladder of them), on one device, several, or several processes."""

import argparse
import contextlib
import os
import time

from keras_guide.commands._devices import compress_devices
from keras_guide.commands._devices import compress_distribution
from keras_guide.commands._options import COUNT
from keras_guide.commands._options import KD_OPTIONS
from keras_guide.commands._options import POSITIVE
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import UsageError
from keras_guide.commands._options import add_budget
from keras_guide.commands._options import add_distillation
from keras_guide.commands._options import add_exports
from keras_guide.commands._options import add_guide_options
from keras_guide.commands._options import add_outputs
from keras_guide.commands._options import add_seed
from keras_guide.commands._options import add_text
from keras_guide.commands._options import budget_of
from keras_guide.commands._options import given
from keras_guide.commands._options import guide_options_of
from keras_guide.commands._options import kd_of
from keras_guide.commands._options import mebibytes
from keras_guide.commands._options import model_help
from keras_guide.commands._outputs import export_paths
from keras_guide.workflows import inputs
from keras_guide.workflows.run import folder_outputs


def _search_steps(text):
    """An argparse type: `auto` (None, resolved per rung) or a count."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        return COUNT(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be auto or an integer ≥ 0. Received: {text!r}"
        ) from None


def _add_size(parser):
    """`--size` and how the student's shape is chosen and limited."""
    group = parser.add_argument_group("the student's size")
    group.add_argument(
        "--size",
        nargs="+",
        default=["25%"],
        help="a share of the teacher's parameters (25%%), a count "
        "(30M) or a shape (num_layers=8,hidden_dim=384); "
        "several shares or counts (50%% 25%%) make a "
        "ladder, each rung distilled from the one before "
        "into OUT/rungN-SIZE/; default 25%%",
    )
    group.add_argument(
        "--candidates",
        type=POSITIVE_INT,
        default=None,
        help="student shapes scored, default 5 (2 where --search-steps auto "
        "trains them, as measured)",
    )
    group.add_argument(
        "--search-steps",
        type=_search_steps,
        default=None,
        metavar="N",
        help="train every candidate shape the run's first N steps before "
        "comparing them (on training windows those steps did not see); the "
        "chosen one continues from them; 0: compared right after guided "
        "initialization. Default auto: a fifth of the steps, over 2 "
        "candidates and the full width, where a student at the teacher's full "
        "width keeps a third of its blocks or more (depth pruning, which only "
        "trained candidates reveal), else 0",
    )
    group.add_argument(
        "--max-memory",
        type=mebibytes,
        default=None,
        metavar="SIZE",
        help="the most memory (e.g. 300MiB, 1.5GiB) a llama.cpp process running "
        "the student may take, measured here on each candidate's .gguf; needs a "
        ".gguf teacher",
    )
    group.add_argument(
        "--min-speedup",
        type=POSITIVE,
        default=None,
        metavar="X",
        help="the least generation speed of the student over the teacher's in "
        "llama.cpp (e.g. 3), measured here on each candidate's .gguf",
    )


def _add_devices(parser):
    group = parser.add_argument_group("devices")
    group.add_argument(
        "--devices",
        type=POSITIVE_INT,
        default=1,
        metavar="N",
        help="data parallelism over the first N local devices "
        "(JAX keras.distribution: weights replicated, each "
        "batch split; --batch-size a multiple of N); a "
        "resume may change it; default 1",
    )
    group.add_argument(
        "--model-parallel",
        type=POSITIVE_INT,
        default=1,
        metavar="M",
        help="also shard teacher and student over groups of M "
        "of the --devices (KerasHub's layout maps, a "
        "(devices/M, M) mesh); default 1 (replicated)",
    )


def _add_outputs(parser):
    group = add_outputs(parser, "output folder", required=True)
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT (the settings must match)",
    )
    add_exports(
        group,
        "also write the student as a Hugging Face folder (transformers), a "
        "KerasHub preset or a .gguf file, beside the format the teacher came in",
        default="q8_0",
        several=True,
        dtype_help="tensor types of a .gguf student, one file each "
        "(student.gguf, then student.TYPE.gguf)",
    )


def add_parser(commands):
    parser = commands.add_parser(
        "compress",
        help="a teacher and a size in, a smaller model out: shape "
        "search, data-aware GUIDE, distillation, a report, the "
        "student written as the teacher came",
    )
    parser.add_argument("teacher", help=model_help())
    _add_size(parser)
    text = add_text(
        parser,
        "training text: .txt files or folders (calibration text is taken from "
        "it too); shakespeare:train names the demo's training plays",
        "held-out text (default: every tenth file of --text, or the last 10%% "
        "of each file; never trained on); shakespeare:test names the demo's "
        "test plays",
        sequence_length=128,
        tokenizer=False,
    )
    text.add_argument(
        "--eval-tokens",
        type=POSITIVE_INT,
        default=4096,
        help="held-out tokens scored, evenly spaced over the "
        "held-out text (the learning curve uses a quarter); "
        "default 4096",
    )
    budget = add_budget(parser, 150, 8, 2e-3, checkpoint_every=25)
    budget.add_argument(
        "--tokens",
        type=POSITIVE_INT,
        default=None,
        help="training tokens (sets --steps: tokens / (batch x length))",
    )
    add_seed(budget, "fixes the data order, the dropout masks and the search")
    distillation = add_distillation(parser)
    distillation.add_argument(
        "--kd",
        choices=("on", "off"),
        default="on",
        help="distil from the live teacher (τ = 1, α = 0.5), or cross-entropy alone",
    )
    # Unset, they take the data-aware recipe from --text; given, they are kept.
    guide = add_guide_options(parser, calibration=False)
    guide.add_argument(
        "--init",
        choices=("guide", "random"),
        default="guide",
        help="random: the student keeps its family's own initializers, drawn "
        "from --seed, and is not guided (no GUIDE option then): the baseline "
        "to measure GUIDE against; default guide",
    )
    _add_devices(parser)
    _add_outputs(parser)


def _check_folders(args):
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
        tables = folder_outputs(args.out, (ladder.TABLE_TEXT, ladder.TABLE_FILE))
        inputs.check_run_folder(
            args.out, folders + tables, named, args.resume, args.overwrite
        )
    for folder in folders:
        student = os.path.join(folder, "student")
        exports = export_paths(student, ["gguf", *args.export], args.gguf_dtype)
        written = folder_outputs(folder, compress_lib.OUTPUTS) + list(exports.values())
        inputs.check_run_folder(
            folder, list(dict.fromkeys(written)), named, args.resume, args.overwrite
        )


def _limits(args, teacher_path):
    """The `search.RuntimeLimits` of `--max-memory` / `--min-speedup`, or
    `None`."""
    if args.max_memory is None and args.min_speedup is None:
        return None
    from keras_guide.workflows.search import RuntimeLimits

    return RuntimeLimits(
        teacher_path,
        args.gguf_dtype[0],
        max_memory_mib=args.max_memory,
        min_speedup=args.min_speedup,
    )


def _check_limits(args):
    """`--max-memory` and `--min-speedup` are measured by llama.cpp on .gguf
    files: a .gguf teacher and llama.cpp are needed."""
    if args.max_memory is None and args.min_speedup is None:
        return
    from keras_guide.gguf import runtime

    option = "--max-memory" if args.max_memory is not None else "--min-speedup"
    if not str(inputs.resolve_model(args.teacher)).endswith(".gguf"):
        raise UsageError(
            f"{option} is measured by llama.cpp on the student's .gguf file, which "
            "a .gguf teacher gives; pass the teacher as a .gguf file, or drop it. "
            f"Received: TEACHER {args.teacher}"
        )
    if not runtime.available():
        raise UsageError(
            f"{option} is measured by llama.cpp, which is not installed here: "
            "pip install llama-cpp-python (see the README), or drop it."
        )


def _steps(args):
    """The run's optimizer steps: `--tokens` over the tokens of a step, or
    `--steps`."""
    if args.tokens is None:
        return args.steps
    return max(1, args.tokens // (args.batch_size * args.sequence_length))


def _check_training(args):
    """`--search-steps` and the distillation options fit the run; returns
    the KD settings (`None` for `--kd off`)."""
    steps = _steps(args)
    if args.search_steps is not None and args.search_steps >= steps:
        raise UsageError(
            f"--search-steps {args.search_steps} must be fewer than the run's "
            f"{steps} steps (the chosen candidate continues from them)."
        )
    if args.search_steps and args.targets_from is not None:
        raise UsageError(
            "--search-steps trains each candidate with the live teacher; stored "
            "targets (--targets-from) would be scored once per candidate. Drop "
            f"one of them. Received: --search-steps {args.search_steps}, "
            f"--targets-from {args.targets_from}"
        )
    if args.kd == "on":
        return kd_of(args)
    options = [f"--{name.replace('_', '-')}" for name in given(args, KD_OPTIONS)]
    if options:
        raise UsageError(
            f"--kd off trains without the teacher: {', '.join(options)} "
            "would not be used. Drop them, or distil with --kd on."
        )
    return None


def _check(args):
    """Checks `compress`'s inputs (changing nothing in `--out`); resolves the
    text arguments in `args`; returns the KD settings."""
    from keras_guide.workflows import ladder
    from keras_guide.workflows import teacher_targets

    try:
        ladder.check_sizes(args.size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    texts = inputs.resolve_texts({"--text": args.text, "--eval": args.eval})
    args.text, args.eval = texts["--text"], texts["--eval"]
    inputs.check_exist({"TEACHER": args.teacher})
    inputs.check_texts(args.text, args.eval or [])
    if args.kd == "on":
        teacher_targets.check_source(
            args.targets_from, inputs.resolve_model(args.teacher), args.top_k
        )
    _check_limits(args)
    args.guide_options = guide_options_of(args)
    if args.init == "random" and args.guide_options:
        raise UsageError(
            "--init random is not guided, so it takes no GUIDE option; drop "
            + ", ".join(
                "--no-rescale" if name == "rescale" else "--" + name.replace("_", "-")
                for name in sorted(args.guide_options)
            )
        )
    return _check_training(args)


def _check_everywhere(args):
    """`_check`, the devices and the distribution, then `--out` (last, as
    `--overwrite` clears it; process 0 owns it), in every process: all go
    on, or all stop.

    Returns:
        `(kd settings, distribution or None)`.
    """
    from keras_guide.distribution import processes

    # Refused before --out is looked at, so nothing there changes.
    devices = compress_devices(args)
    failure = kd = distribution = None
    try:
        kd = _check(args)
        if devices is not None:
            distribution = compress_distribution(args, devices)
        if processes.process_index() == 0:
            _check_folders(args)
    except Exception as error:  # noqa: BLE001 (raised after the others hear of it)
        failure = error
    if not processes.all_agree(failure is None):
        raise failure or UsageError(
            "Another process of this run refused its arguments (its message says "
            "why); nothing was written."
        )
    return kd, distribution


def run(args):
    import keras

    from keras_guide.distribution import processes
    from keras_guide.workflows import ladder

    kd, distribution = _check_everywhere(args)
    # The seed first: the models' dropout seeds are drawn as they load.
    keras.utils.set_random_seed(args.seed)
    # Variables take their (replicated) layout as they are created: the
    # teacher loads inside the distribution. llama.cpp runs in child
    # processes, which it does not reach.
    scope = contextlib.nullcontext() if distribution is None else distribution.scope()
    # Process 0 writes --out; any other, a private copy (`processes`).
    with processes.run_folder(args.out, args.resume) as out, scope:
        rungs, first = _run_rungs(args, out, kd)
        if len(rungs) > 1 and processes.process_index() == 0:
            sizes = zip(args.size, rungs)
            table = [(size, folder, report) for size, (_, folder, report) in sizes]
            print(ladder.write_table(args.out, table, first))
    if processes.process_index() > 0:
        print(
            f"Process {processes.process_index()} of {processes.process_count()} "
            f"done; process 0 wrote the report to {args.out}"
        )


def _run_rungs(args, out, kd):
    """Each `--size` in turn, the first from the teacher, each next one from
    the student before it.

    Returns:
        `([(size, folder, report)], the first teacher's size and loss)`.
    """
    from keras_guide.distribution import processes
    from keras_guide.workflows import compress as compress_lib
    from keras_guide.workflows import ladder

    started = time.perf_counter()
    teacher_path = inputs.resolve_model(args.teacher)
    teacher = inputs.load_model(teacher_path)
    import_seconds = time.perf_counter() - started
    # Measured against the first teacher at every rung.
    limits = _limits(args, teacher_path)
    rungs, first = [], None
    for size, folder in zip(args.size, ladder.rung_folders(out, args.size)):
        if rungs:  # the previous rung's student teaches this one
            teacher = inputs.load_model(os.path.join(rungs[-1][1], "student.keras"))
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
            limits=limits,
        )
        first = first or {
            **report["teacher"],
            "loss": report["evaluation"]["teacher_loss"],
        }
        rungs.append((size, folder, report))
        if processes.process_index() == 0:
            print(compress_lib.render(report))
    return rungs, first


# `--candidates` unless given, where `--search-steps auto` does not train them.
CANDIDATES = 5


def _search_of(args, teacher, target, steps):
    """`(search steps, candidates)` for this rung: `--search-steps`, with
    `auto` resolved (said when it trains the candidates, then over
    `search.AUTO_CANDIDATES` unless `--candidates` is given; never with
    stored targets or a random start), and `--candidates` or its default."""
    from keras_guide.distribution import processes
    from keras_guide.workflows import search

    auto = args.search_steps is None
    if auto and args.targets_from is None and args.init != "random":
        search_steps, why = search.auto_search_steps(teacher, target, steps)
        if search_steps:
            candidates = args.candidates or search.AUTO_CANDIDATES
            if processes.process_index() == 0:
                print(
                    f"--search-steps auto: {search_steps} ({why}), "
                    f"{candidates} candidates"
                )
            return search_steps, candidates
    return args.search_steps or 0, args.candidates or CANDIDATES


def _student_file(report, folder):
    """The file a rung's student teaches the next rung from: its first
    `.gguf` (the next student's files then follow it), else its `.keras`."""
    files = [p for p in report["outputs"] if p.endswith(".gguf")]
    return files[0] if files else os.path.join(folder, "student.keras")


def _compress_rung(
    args, teacher, teacher_path, size, out, kd, import_seconds, teacher_name, limits
):
    """One `compress` run of `teacher` at `size` into `out`; the report."""
    from keras_guide.workflows import compress as compress_lib

    target, shape = compress_lib.parse_size(size, teacher)
    windows = compress_lib.windows(teacher, args.text, args.eval, args.sequence_length)
    steps = _steps(args)
    held_out = (
        "--eval " + " ".join(os.path.basename(p) for p in args.eval)
        if args.eval
        else "held back from --text: every tenth file, or the last 10% of each"
    )
    search_steps, candidates = _search_of(args, teacher, target, steps)
    budget = budget_of(
        args,
        kd,
        steps=steps,
        checkpoint_every=min(args.checkpoint_every, steps),
        search_steps=search_steps,
    )
    return compress_lib.compress(
        teacher,
        teacher_path,
        windows,
        out,
        compress_lib.ShapeSearch(
            target=target,
            shape=shape,
            calibration_tokens=args.calibration_tokens,
            max_candidates=candidates,
            guide_options=args.guide_options,
            limits=limits,
            init=args.init,
        ),
        budget=budget,
        gguf_dtype=args.gguf_dtype,
        exports=args.export,
        eval_windows=max(1, args.eval_tokens // args.sequence_length),
        held_out_text=compress_lib.held_out_as_text(args.text, args.eval),
        about=compress_lib.About(
            teacher_name=teacher_name,
            held_out=held_out,
            import_seconds=import_seconds,
            devices=args.devices,
            model_parallel=args.model_parallel,
        ),
        resume=args.resume and os.path.exists(out),
    )
