"""`keras-guide compare`: GUIDE's initializations side by side on your text."""

import time

from keras_guide.commands._inputs import ABLATION_OUTPUTS
from keras_guide.commands._inputs import UsageError
from keras_guide.commands._inputs import check_inputs_exist
from keras_guide.commands._inputs import folder_outputs
from keras_guide.commands._inputs import load_model
from keras_guide.commands._inputs import run_windows
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import add_budget
from keras_guide.commands._options import add_common
from keras_guide.commands._options import add_sizes
from keras_guide.commands._options import add_text
from keras_guide.commands._options import student_sizes
from keras_guide.workflows import inputs


def add_parser(commands):
    compare = commands.add_parser(
        "compare", help="the ablation on your own teacher, student shape and text"
    )
    compare.add_argument("--teacher", required=True)
    compare.add_argument("--out", required=True, help="output folder")
    add_text(compare)
    add_sizes(compare)
    add_budget(compare, 300, 16, 2e-3)
    compare.add_argument(
        "--eval-windows",
        type=POSITIVE_INT,
        default=None,
        help="evaluate on this many held-out windows (default: all)",
    )
    add_common(compare)


def run(args):
    from keras_guide.workflows import ablation
    from keras_guide.workflows.compare import compare

    sizes = student_sizes(args)
    if not sizes:
        raise UsageError("compare: give the student's shape, e.g. --hidden-dim 128.")
    check_inputs_exist(args, ("--teacher",))
    inputs.check_outputs(
        args.out,
        folder_outputs(args.out, ABLATION_OUTPUTS),
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
        run_windows(args, teacher),
        settings,
        args.out,
        meta={"teacher": args.teacher},
        started=started,
    )
