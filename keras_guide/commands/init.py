"""`keras-guide init`: a guided student, without training."""

import os

from keras_guide.commands._options import SIZE_NAMES
from keras_guide.commands._options import UsageError
from keras_guide.commands._options import add_exports
from keras_guide.commands._options import add_guide_options
from keras_guide.commands._options import add_outputs
from keras_guide.commands._options import add_seed
from keras_guide.commands._options import add_sizes
from keras_guide.commands._options import given
from keras_guide.commands._options import guide_options_of
from keras_guide.commands._options import model_help
from keras_guide.commands._outputs import export_paths
from keras_guide.commands._outputs import write_exports
from keras_guide.workflows import inputs


def add_parser(commands):
    init = commands.add_parser("init", help="teacher + student shape -> guided student")
    init.add_argument("teacher", help=model_help())
    add_sizes(init)
    guide = add_guide_options(init)
    guide.add_argument(
        "--data-free",
        action="store_true",
        help="guide a pretrained (.gguf) teacher without calibration "
        "text (measured behind uniform weight selection on real "
        "teachers; --calibration is the recommended recipe)",
    )
    add_seed(guide, "seed of the weights GUIDE leaves random")
    outputs = add_outputs(init, "student .keras file to write", required=True)
    add_exports(
        outputs,
        "also write the student as a llama.cpp .gguf file, a KerasHub preset "
        "folder and/or a Hugging Face folder (transformers), next to it",
    )


def run(args):
    from keras_guide.workflows.initialize import init_student

    sizes = given(args, SIZE_NAMES)
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
    calibration = inputs.resolve_texts({"--calibration": args.calibration})
    options = guide_options_of(args, calibrated=bool(args.calibration))
    teacher = inputs.load_model(args.teacher)
    if args.calibration:
        options["calibration"] = inputs.calibration_ids(
            calibration["--calibration"],
            inputs.get_encoder("auto", teacher),
            args.calibration_tokens,
        )
    report, student = init_student(teacher, args.out, sizes, options, seed=args.seed)
    print(report)
    print(f"Wrote {args.out}")
    write_exports(student, args.out[: -len(".keras")], args, args.teacher)
