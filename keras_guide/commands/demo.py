"""`keras-guide demo`: GUIDE's ablation on the shipped teacher."""

from keras_guide.commands._inputs import ABLATION_OUTPUTS
from keras_guide.commands._inputs import folder_outputs
from keras_guide.commands._options import POSITIVE
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import add_common
from keras_guide.workflows import inputs


def add_parser(commands):
    demo = commands.add_parser(
        "demo", help="GUIDE's ablation on Shakespeare with the shipped teacher"
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="tiny budget for CI (about a minute; numbers not meaningful)",
    )
    demo.add_argument("--out", default="keras_guide_demo", help="output folder")
    demo.add_argument("--steps", type=POSITIVE_INT, default=None)
    demo.add_argument("--batch-size", type=POSITIVE_INT, default=None)
    demo.add_argument("--learning-rate", type=POSITIVE, default=None)
    demo.add_argument(
        "--train-teacher",
        action="store_true",
        help="retrain the teacher first (about 30-40 min on 2 CPU cores)",
    )
    add_common(demo)


def run(args):
    from keras_guide.demo.run import run_demo

    inputs.check_outputs(
        args.out, folder_outputs(args.out, ABLATION_OUTPUTS), {}, args.overwrite
    )
    run_demo(
        args.out,
        quick=args.quick,
        num_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        train_teacher=args.train_teacher,
    )
