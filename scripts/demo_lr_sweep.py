"""Picks the demo's student learning rate for the random-init baseline.

Usage: python scripts/demo_lr_sweep.py [--steps 300] [--lrs 1e-3 2e-3 4e-3 8e-3]
Trains the random-init student (seeds 0 and 1) with each peak learning rate on the
demo's budget and prints its loss on the validation play (never the test
plays). The demo uses the best one for every variant, so the baseline is not
weakened by a learning rate chosen for GUIDE.
"""

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from keras_guide.demo import data  # noqa: E402
from keras_guide.demo import models  # noqa: E402
from keras_guide.demo import run as demo  # noqa: E402
from keras_guide.evaluation import heldout_cross_entropy  # noqa: E402
from keras_guide.workflows import training  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=demo.DEFAULT.num_steps)
    parser.add_argument(
        "--lrs", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3, 8e-3]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    settings = dataclasses.replace(demo.DEFAULT, num_steps=args.steps)
    corpus = data.DemoData(models.STUDENT_CONFIG["max_sequence_length"])
    batches = corpus.train_batches(settings.batch_size, seed=settings.data_seed)
    validation = corpus.eval_batches("validation")
    for lr, seed in [(lr, seed) for lr in args.lrs for seed in args.seeds]:
        student = models.build_causal_lm(models.STUDENT_CONFIG, seed=seed)
        student.compile(
            optimizer=training.adamw(
                lr, settings.num_steps, settings.warmup_steps, settings.weight_decay
            ),
            loss=training.causal_lm_loss(),
        )
        training.train(student, batches, settings.num_steps, verbose=False)
        print(
            f"peak lr {lr:g}, seed {seed}: validation loss "
            f"{heldout_cross_entropy(student, validation):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
