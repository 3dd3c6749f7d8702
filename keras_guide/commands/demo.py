"""`keras-guide demo`: GUIDE's ablation on the shipped teacher."""

from keras_guide.commands._options import POSITIVE
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import add_outputs

# `run_demo`'s keywords, each the option of the same name.
_SETTINGS = ("quick", "num_steps", "batch_size", "learning_rate", "train_teacher")


def add_parser(commands):
    demo = commands.add_parser(
        "demo", help="GUIDE's ablation on Shakespeare with the shipped teacher"
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="tiny budget for CI (about a minute; numbers not meaningful)",
    )
    demo.add_argument(
        "--train-teacher",
        action="store_true",
        help="retrain the teacher first (about 30-40 min on 2 CPU cores)",
    )
    budget = demo.add_argument_group("training budget (default: the demo's)")
    budget.add_argument(
        "--steps", type=POSITIVE_INT, default=None, dest="num_steps", metavar="STEPS"
    )
    budget.add_argument("--batch-size", type=POSITIVE_INT, default=None)
    budget.add_argument("--learning-rate", type=POSITIVE, default=None)
    add_outputs(demo, "output folder", default="keras_guide_demo")


def run(args):
    from keras_guide.demo.run import run_demo
    from keras_guide.workflows import ablation

    ablation.check_output(args.out, args.overwrite)
    run_demo(args.out, **{name: getattr(args, name) for name in _SETTINGS})
