"""`keras-guide distill`: train a student with the `Distiller`, optionally
over several devices."""

import contextlib
import os

from keras_guide.commands._inputs import check_inputs_exist
from keras_guide.commands._inputs import export_paths
from keras_guide.commands._inputs import folder_outputs
from keras_guide.commands._inputs import load_model
from keras_guide.commands._inputs import run_windows
from keras_guide.commands._inputs import write_exports
from keras_guide.commands._options import POSITIVE
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import add_budget
from keras_guide.commands._options import add_common
from keras_guide.commands._options import add_export_options
from keras_guide.commands._options import add_text
from keras_guide.commands._options import add_top_k
from keras_guide.commands._options import number
from keras_guide.workflows import inputs


def add_parser(commands):
    distill = commands.add_parser("distill", help="train a student with CE + KD")
    distill.add_argument("--teacher", required=True)
    distill.add_argument(
        "--student", required=True, help=".keras file, .gguf file or preset folder"
    )
    distill.add_argument("--out", required=True, help="output folder")
    add_text(distill)
    add_budget(distill, 1000, 16, 1e-3)
    distill.add_argument(
        "--student-loss-weight",
        default=None,
        type=number(float, 0.0, strict=False, upper=1.0),
        help="α: loss = α·CE + (1 − α)·τ²·KL (default 0.5)",
    )
    distill.add_argument(
        "--temperature",
        type=POSITIVE,
        default=None,
        help="τ of the KD term (default 1.0, measured best on SmolLM2)",
    )
    add_top_k(distill)
    distill.add_argument("--checkpoint-every", type=POSITIVE_INT, default=200)
    distill.add_argument(
        "--seed",
        type=number(int, 0, strict=False),
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
        type=POSITIVE_INT,
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
    add_common(distill)
    add_export_options(distill)


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


def run(args):
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
    check_inputs_exist(args, ("--teacher", "--student"))
    from keras_guide.workflows import teacher_targets

    teacher_targets.check_source(
        kd.get("targets_from"), inputs.resolve_model(args.teacher), kd.get("top_k")
    )
    exports = export_paths(os.path.join(args.out, "student"), args.export)
    inputs.check_not_input(
        args.out,
        folder_outputs(args.out, distill_lib.OUTPUTS) + list(exports.values()),
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
            run_windows(args, teacher, student),
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
        write_exports(student, os.path.join(args.out, "student"), args, args.teacher)
