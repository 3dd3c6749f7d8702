"""GUIDE + knowledge distillation with the Python API, on Shakespeare's plays.

The teacher is the GPT-2 4×256 that ships with keras-guide (trained on the
training plays). A 2×128 student is built from the teacher's config,
initialized with `keras_guide.guide`, then distilled with
`keras_guide.Distiller` and an ordinary `model.fit`; a random-init student gets
the same data, steps and optimizer. Both are scored on the held-out plays.

    python examples/gpt2_plays.py --steps 200
    python examples/gpt2_plays.py --steps 200 --regularize 1e-3   # + GuideRegularizer

With `--regularize λ`, every guided weight also carries a `GuideRegularizer`
(`λ · mean((W − W_guided)²)`), decayed to zero along a cosine by
`GuideSchedule`. This script shows the API; `keras-guide demo` is the measured
ablation.
"""

import argparse
import time

import keras
import numpy as np

import keras_guide
from keras_guide.callbacks import GuideSchedule
from keras_guide.callbacks import gap_closed
from keras_guide.demo import data
from keras_guide.demo import models
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.workflows import training


def fit_arrays(batches, steps):
    """The first `steps` batches of a fixed-order `text.Batches`, stacked for `fit`."""
    parts = [batches.batch(step) for step in range(steps)]
    x = {key: np.concatenate([p[0][key] for p in parts]) for key in parts[0][0]}
    y = np.concatenate([p[1] for p in parts])
    sample_weight = np.concatenate([p[2] for p in parts])
    return x, y, sample_weight


def train_student(
    teacher, student, arrays, steps, batch_size, learning_rate, regularize, verbose
):
    """Distills `student` from `teacher` with `model.fit` (CE + KD + guide loss)."""
    distiller = keras_guide.Distiller(teacher, student)  # α = 0.5, τ = 1, true KD
    distiller.compile(optimizer=training.adamw(learning_rate, steps, steps // 10))
    callbacks = []
    if regularize:
        callbacks.append(GuideSchedule(steps, guide_strength=(regularize, 0.0)))
    x, y, sample_weight = arrays
    # Padding carries sample weight 0 and is left out of every loss term.
    history = distiller.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,
        callbacks=callbacks,
        verbose=verbose,
    )
    return history.history


def run(
    steps=200,
    batch_size=16,
    learning_rate=4e-3,
    regularize=0.0,
    verbose=1,
    eval_windows=None,
):
    """Trains a guided and a random-init student; returns their held-out losses.

    `eval_windows` limits the held-out windows scored (None: all test plays).
    """
    teacher = models.load_teacher()
    demo = data.DemoData(models.STUDENT_CONFIG["max_sequence_length"])
    arrays = fit_arrays(demo.train_batches(batch_size, seed=0), steps)
    held_out = demo.eval_batches("test", max_windows=eval_windows)
    results = {"teacher": heldout_cross_entropy(teacher, held_out)}
    sizes = {
        k: models.STUDENT_CONFIG[k]
        for k in ("hidden_dim", "num_layers", "num_heads", "intermediate_dim")
    }
    for name in ("guide", "random"):
        student = keras_guide.build_student(teacher, name=f"{name}_student", **sizes)
        if name == "guide":
            # In place, from the teacher's weights; the teacher is only read.
            report = keras_guide.guide(teacher, student, regularize=regularize or None)
            if verbose:
                print(report)
        step0 = heldout_cross_entropy(student, held_out)
        began = time.perf_counter()
        history = train_student(
            teacher,
            student,
            arrays,
            steps,
            batch_size,
            learning_rate,
            regularize if name == "guide" else 0.0,
            verbose,
        )
        results[name] = {
            "step0": step0,
            "loss": heldout_cross_entropy(student, held_out),
            "seconds": time.perf_counter() - began,
            "kd_loss": history["kd_loss"][-1],
            "guide_loss": history["guide_loss"][-1],
        }
        if verbose:
            print(
                f"{name}: held-out loss {step0:.3f} -> {results[name]['loss']:.3f} "
                f"in {results[name]['seconds']:.0f}s"
            )
    results["gap_closed"] = gap_closed(
        results["guide"]["loss"], results["random"]["loss"], results["teacher"]
    )
    if results["guide"]["loss"] < results["teacher"]:
        print(
            "The guided student beat the teacher: the teacher is under-trained for "
            "this budget, and the gap closed is meaningless."
        )
    if verbose:
        print(
            f"teacher {results['teacher']:.3f}; GUIDE + KD closes "
            f"{100 * results['gap_closed']:.1f} % of random-init + KD's gap "
            f"after {steps} steps on {keras.backend.backend()}."
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=4e-3)
    parser.add_argument(
        "--regularize",
        type=float,
        default=0.0,
        help="GuideRegularizer strength λ, decayed to 0 (default: off)",
    )
    args = parser.parse_args()
    run(args.steps, args.batch_size, args.learning_rate, args.regularize)


if __name__ == "__main__":
    main()
