"""`keras-guide compress`: a checkpoint and a size to a trained, measured
student (or a ladder of them), on one device, several, or several processes."""

import argparse
import contextlib
import math
import os
import time

from keras_guide.commands._inputs import UsageError
from keras_guide.commands._inputs import export_paths
from keras_guide.commands._inputs import folder_outputs
from keras_guide.commands._inputs import load_model
from keras_guide.commands._inputs import text_paths
from keras_guide.commands._options import POSITIVE
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import add_budget
from keras_guide.commands._options import add_common
from keras_guide.commands._options import add_guide_options
from keras_guide.commands._options import add_top_k
from keras_guide.commands._options import guide_options_of
from keras_guide.commands._options import number
from keras_guide.gguf.dtypes import DTYPES as GGUF_DTYPES
from keras_guide.workflows import inputs


def add_parser(commands):
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
        type=POSITIVE_INT,
        default=None,
        help="training tokens (sets --steps: tokens / (batch x length))",
    )
    add_budget(compress, 150, 8, 2e-3)
    compress.add_argument(
        "--sequence-length", type=number(int, 2, strict=False), default=128
    )
    compress.add_argument(
        "--kd",
        choices=("on", "off"),
        default="on",
        help="distil from the live teacher (τ = 1, α = 0.5), or cross-entropy alone",
    )
    compress.add_argument("--temperature", type=POSITIVE, default=None)
    add_top_k(compress)
    compress.add_argument(
        "--student-loss-weight",
        default=None,
        type=number(float, 0.0, strict=False, upper=1.0),
    )
    compress.add_argument("--calibration-tokens", type=POSITIVE_INT, default=4096)
    compress.add_argument(
        "--eval-tokens",
        type=POSITIVE_INT,
        default=4096,
        help="held-out tokens scored, evenly spaced over the "
        "held-out text (the learning curve uses a quarter); "
        "default 4096",
    )
    compress.add_argument(
        "--candidates",
        type=POSITIVE_INT,
        default=5,
        help="student shapes scored, default 5",
    )
    compress.add_argument(
        "--max-memory",
        type=_mebibytes,
        default=None,
        metavar="SIZE",
        help="the most memory (e.g. 300MiB, 1.5GiB) a llama.cpp process running "
        "the student may take, measured here on each candidate's .gguf; needs a "
        ".gguf teacher",
    )
    compress.add_argument(
        "--min-speedup",
        type=POSITIVE,
        default=None,
        metavar="X",
        help="the least generation speed of the student over the teacher's in "
        "llama.cpp (e.g. 3), measured here on each candidate's .gguf",
    )
    compress.add_argument(
        "--search-steps",
        type=number(int, 0, strict=False),
        default=0,
        metavar="N",
        help="train every candidate shape the run's first N steps before "
        "comparing them (on training windows those steps did not see); the "
        "chosen one continues from them. Default 0: compared right after "
        "guided initialization",
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
    compress.add_argument("--checkpoint-every", type=POSITIVE_INT, default=25)
    compress.add_argument("--seed", type=number(int, 0, strict=False), default=0)
    compress.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT (the settings must match)",
    )
    compress.add_argument(
        "--devices",
        type=POSITIVE_INT,
        default=1,
        metavar="N",
        help="data parallelism over the first N local devices "
        "(JAX keras.distribution: weights replicated, each "
        "batch split; --batch-size a multiple of N); a "
        "resume may change it; default 1",
    )
    compress.add_argument(
        "--model-parallel",
        type=POSITIVE_INT,
        default=1,
        metavar="M",
        help="also shard teacher and student over groups of M "
        "of the --devices (KerasHub's layout maps, a "
        "(devices/M, M) mesh); default 1 (replicated)",
    )
    # Unset, they take the data-aware recipe from --text; given, they are kept.
    add_guide_options(compress, calibration=False)
    add_common(compress)


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
        written = folder_outputs(folder, compress_lib.OUTPUTS) + list(
            export_paths(
                os.path.join(folder, "student"), ["gguf", *args.export], args.gguf_dtype
            ).values()
        )
        inputs.check_run_folder(
            folder, list(dict.fromkeys(written)), named, args.resume, args.overwrite
        )


_UNITS = {"kib": 2**-10, "k": 2**-10, "mib": 1.0, "m": 1.0, "gib": 2**10, "g": 2**10}


def _mebibytes(text):
    """An argparse type: `300MiB`, `1.5GiB`, `300M` as MiB (a bare number:
    MiB)."""
    import re

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

    given = "--max-memory" if args.max_memory is not None else "--min-speedup"
    if not str(inputs.resolve_model(args.teacher)).endswith(".gguf"):
        raise UsageError(
            f"{given} is measured by llama.cpp on the student's .gguf file, which "
            "a .gguf teacher gives; pass the teacher as a .gguf file, or drop it. "
            f"Received: TEACHER {args.teacher}"
        )
    if not runtime.available():
        raise UsageError(
            f"{given} is measured by llama.cpp, which is not installed here: "
            "pip install llama-cpp-python (see the README), or drop it."
        )


def _steps(args):
    """The run's optimizer steps: `--tokens` over the tokens of a step, or
    `--steps`."""
    if args.tokens is None:
        return args.steps
    return max(1, args.tokens // (args.batch_size * args.sequence_length))


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
    _check_limits(args)
    steps = _steps(args)
    if args.search_steps >= steps:
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


def run(args):
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
                # Measured against the first teacher at every rung.
                limits=_limits(args, inputs.resolve_model(args.teacher)),
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
    budget = compress_lib.Budget(
        steps=steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        kd=kd,
        checkpoint_every=min(args.checkpoint_every, steps),
        seed=args.seed,
        search_steps=args.search_steps,
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
        guide_options=guide_options_of(args),
        held_out_text=compress_lib.held_out_as_text(args.text, args.eval),
        exports=args.export,
        eval_windows=max(1, args.eval_tokens // args.sequence_length),
        devices=args.devices,
        model_parallel=args.model_parallel,
        limits=limits,
    )
