"""Trains the demo's teacher (GPT-2 4x256 on the training plays) and ships it.

Usage: KERAS_BACKEND=tensorflow python scripts/train_demo_teacher.py
    [--steps N] [--out DIR]
Writes teacher.weights.h5, teacher_config.json (config and training record),
teacher_curve.csv and teacher_curve.png into keras_guide/demo/assets/.
The recipe is `keras_guide.demo.teacher.RECIPE`.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from keras_guide.demo import models  # noqa: E402
from keras_guide.demo import teacher  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=None, help=f"default {teacher.RECIPE['num_steps']}"
    )
    parser.add_argument("--out", default=models.ASSETS_DIR)
    args = parser.parse_args(argv)
    teacher.train_teacher(args.out, num_steps=args.steps)


if __name__ == "__main__":
    main()
