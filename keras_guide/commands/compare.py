"""`keras-guide compare`: GUIDE's initializations side by side on your text."""

import time

from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import SIZE_NAMES
from keras_guide.commands._options import UsageError
from keras_guide.commands._options import add_budget
from keras_guide.commands._options import add_outputs
from keras_guide.commands._options import add_sizes
from keras_guide.commands._options import add_teacher
from keras_guide.commands._options import add_text
from keras_guide.commands._options import given
from keras_guide.commands._options import teacher_of
from keras_guide.workflows import inputs


def add_parser(commands):
    compare = commands.add_parser(
        "compare", help="the ablation on your own teacher, student shape and text"
    )
    add_teacher(compare)
    text = add_text(
        compare,
        ".txt files or folders (searched recursively); shakespeare:train names "
        "the demo's training plays",
        "held-out .txt files or folders (default: every tenth file, or the last "
        "10%% of each file)",
    )
    text.add_argument(
        "--eval-windows",
        type=POSITIVE_INT,
        default=None,
        help="evaluate on this many held-out windows (default: all)",
    )
    add_sizes(compare)
    add_budget(compare, 300, 16, 2e-3)
    add_outputs(compare, "output folder", required=True)


def run(args):
    from keras_guide.workflows import ablation
    from keras_guide.workflows.compare import compare

    args.teacher = teacher_of(args)
    sizes = given(args, SIZE_NAMES)
    if not sizes:
        raise UsageError("compare: give the student's shape, e.g. --hidden-dim 128.")
    inputs.check_exist({"TEACHER": args.teacher})
    texts = inputs.resolve_texts({"--text": args.text, "--eval": args.eval})
    ablation.check_output(
        args.out, args.overwrite, {"TEACHER": inputs.resolve_model(args.teacher)}
    )
    settings = ablation.Settings(
        num_steps=args.steps,
        batch_size=args.batch_size,
        peak_learning_rate=args.learning_rate,
        warmup_steps=max(1, args.steps // 10),
        eval_windows=args.eval_windows,
    )
    started = time.perf_counter()
    teacher = inputs.load_model(args.teacher)
    windows = inputs.load_windows(
        texts["--text"],
        teacher,
        tokenizer=args.tokenizer,
        sequence_length=args.sequence_length,
        held_out=texts["--eval"],
    )
    compare(
        teacher,
        sizes,
        windows,
        settings,
        args.out,
        meta={"teacher": args.teacher},
        started=started,
    )
