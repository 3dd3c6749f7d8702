"""`keras-guide init`: a guided student, without training."""

import os

from keras_guide.commands._inputs import UsageError
from keras_guide.commands._inputs import export_paths
from keras_guide.commands._inputs import get_encoder
from keras_guide.commands._inputs import load_model
from keras_guide.commands._inputs import write_exports
from keras_guide.commands._options import add_common
from keras_guide.commands._options import add_export_options
from keras_guide.commands._options import add_guide_options
from keras_guide.commands._options import add_sizes
from keras_guide.commands._options import guide_options_of
from keras_guide.commands._options import number
from keras_guide.commands._options import student_sizes
from keras_guide.workflows import inputs


def add_parser(commands):
    init = commands.add_parser("init", help="teacher + student shape -> guided student")
    init.add_argument(
        "teacher",
        help="'demo', a .keras file, a .gguf file or a KerasHub preset folder",
    )
    init.add_argument("--out", required=True, help="student .keras file to write")
    init.add_argument(
        "--seed",
        type=number(int, 0, strict=False),
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
    add_common(init)
    add_sizes(init)
    add_guide_options(init)
    add_export_options(init)


def run(args):
    from keras_guide.workflows.initialize import init_student

    sizes = student_sizes(args)
    if not sizes:
        raise UsageError("init: give at least one student size, e.g. --hidden-dim 128.")
    if os.path.isdir(args.out) or not args.out.endswith(".keras"):
        raise UsageError(
            f"init: --out must be a .keras file to write. Received: --out {args.out}"
        )
    exports = export_paths(args.out[: -len(".keras")], args.export)
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
    options = guide_options_of(args)
    if args.calibration:
        options["calibration"] = inputs.calibration_ids(
            args.calibration, get_encoder("auto", teacher), args.calibration_tokens
        )
    report, student = init_student(teacher, args.out, sizes, options, seed=args.seed)
    print(report)
    print(f"Wrote {args.out}")
    write_exports(student, args.out[: -len(".keras")], args, args.teacher)
