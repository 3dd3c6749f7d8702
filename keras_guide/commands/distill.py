"""`keras-guide distill`: train a student with the `Distiller`, optionally
over several devices."""

import os

from keras_guide.commands._devices import distill_scope
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import add_budget
from keras_guide.commands._options import add_distillation
from keras_guide.commands._options import add_exports
from keras_guide.commands._options import add_outputs
from keras_guide.commands._options import add_seed
from keras_guide.commands._options import add_teacher
from keras_guide.commands._options import add_text
from keras_guide.commands._options import budget_of
from keras_guide.commands._options import kd_of
from keras_guide.commands._options import model_help
from keras_guide.commands._options import teacher_of
from keras_guide.commands._outputs import export_paths
from keras_guide.commands._outputs import write_exports
from keras_guide.workflows import inputs
from keras_guide.workflows.run import folder_outputs


def add_parser(commands):
    distill = commands.add_parser("distill", help="train a student with CE + KD")
    add_teacher(distill)
    distill.add_argument("--student", required=True, help=model_help())
    add_text(
        distill,
        ".txt files or folders (searched recursively); shakespeare:train names "
        "the demo's training plays",
        "held-out .txt files or folders (default: every tenth file, or the last "
        "10%% of each file)",
    )
    budget = add_budget(distill, 1000, 16, 1e-3, checkpoint_every=200)
    add_seed(budget, "fixes the data order and the dropout masks")
    add_distillation(distill)
    devices = distill.add_argument_group("devices")
    devices.add_argument(
        "--data-parallel",
        action="store_true",
        help="replicate the models over all devices, split batches "
        "(JAX; TF: MirroredStrategy)",
    )
    devices.add_argument(
        "--model-parallel",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="also shard weights over N devices (JAX keras.distribution)",
    )
    outputs = add_outputs(distill, "output folder", required=True)
    outputs.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from its newest complete "
        "checkpoint (the settings must be the same)",
    )
    add_exports(
        outputs,
        "also write the student as a llama.cpp .gguf file, a KerasHub preset "
        "folder and/or a Hugging Face folder (transformers), next to it",
    )


def _check(args, kd):
    """Checks the inputs and `--out` before anything loads; resolves the
    text arguments in `args`."""
    from keras_guide.workflows import distill as distill_lib
    from keras_guide.workflows import teacher_targets

    inputs.check_exist({"TEACHER": args.teacher, "--student": args.student})
    texts = inputs.resolve_texts({"--text": args.text, "--eval": args.eval})
    args.text, args.eval = texts["--text"], texts["--eval"]
    teacher_targets.check_source(
        kd.get("targets_from"), inputs.resolve_model(args.teacher), kd.get("top_k")
    )
    exports = export_paths(os.path.join(args.out, "student"), args.export)
    inputs.check_not_input(
        args.out,
        folder_outputs(args.out, distill_lib.OUTPUTS) + list(exports.values()),
        {"TEACHER": args.teacher, "--student": args.student},
    )
    distill_lib.check_output(args.out, resume=args.resume, overwrite=args.overwrite)


def run(args):
    import keras

    from keras_guide.workflows import distill as distill_lib

    args.teacher = teacher_of(args)
    kd = kd_of(args)
    _check(args, kd)
    distribution = (
        ("model", args.model_parallel)
        if args.model_parallel
        else (("data", None) if args.data_parallel else (None, None))
    )
    # The seed first: the models' dropout seeds are drawn as they load.
    keras.utils.set_random_seed(args.seed)
    with distill_scope(args):
        teacher = inputs.load_model(args.teacher)
        student = inputs.load_model(args.student)
        windows = inputs.load_windows(
            args.text,
            teacher,
            student,
            args.tokenizer,
            args.sequence_length,
            held_out=args.eval,
        )
        result = distill_lib.distill(
            teacher,
            student,
            windows,
            args.out,
            budget_of(args, kd),
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
        student = inputs.load_model(os.path.join(args.out, distill_lib.STUDENT_FILE))
        write_exports(student, os.path.join(args.out, "student"), args, args.teacher)
