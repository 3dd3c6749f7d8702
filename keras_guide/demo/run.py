"""`keras-guide demo`: GUIDE's ablation on Shakespeare with the shipped teacher.

The teacher is a GPT-2 4×256 trained on the training plays
(`scripts/train_demo_teacher.py`); the students are GPT-2 2×128
(`models.STUDENT_CONFIG`). Held-out loss is measured on the fixed test plays
(`data.TEST_PLAYS`).

The budget (200 steps of 16×128 tokens) is sized to run in minutes on a
2-core CPU. Every variant shares the peak learning rate the random-init
baseline trains best with on the validation play (`scripts/demo_lr_sweep.py`;
the sweep is in `benchmarks/RESULTS.md`), so the baseline is not weakened by
a rate chosen for GUIDE.
"""

import dataclasses
import os
import time

import keras

from keras_guide.demo import data as data_lib
from keras_guide.demo import models
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.workflows import ablation

# The rest is `Settings`' defaults: 30 warmup steps, 6 curve points on 64
# windows, every test window.
DEFAULT = ablation.Settings(num_steps=200, batch_size=16, peak_learning_rate=4e-3)
# CI's budget: the same run in miniature (its numbers are not meaningful).
QUICK = dataclasses.replace(
    DEFAULT,
    num_steps=24,
    batch_size=8,
    warmup_steps=4,
    curve_points=2,
    curve_windows=8,
    eval_windows=32,
)


def run_demo(
    out_dir="keras_guide_demo",
    quick=False,
    num_steps=None,
    batch_size=None,
    learning_rate=None,
    train_teacher=False,
    teacher_dir=None,
    variants=ablation.DEFAULT_VARIANTS,
    verbose=True,
):
    """Runs the ablation, prints the table, writes results, plot and best student.

    Args:
        out_dir: where `results.csv`, `results.json`, `ablation.png` and
            `best_student.keras` go.
        quick: a tiny budget for CI (numbers are not meaningful).
        num_steps, batch_size, learning_rate: override the budget.
        train_teacher: retrain the teacher into `out_dir/teacher` first
            (`teacher.RECIPE`) instead of using the shipped one.
        teacher_dir: a folder with a teacher written by `train_teacher`
            (default: the shipped assets).
        variants: the ablation's rows.
        verbose: progress bars and messages.

    Returns:
        `(results, teacher_loss)`.
    """
    settings = _settings(quick, num_steps, batch_size, learning_rate)
    start = time.perf_counter()
    teacher_dir = _teacher_dir(out_dir, teacher_dir, train_teacher, verbose)
    teacher = models.load_teacher(teacher_dir)
    student_config = dict(models.STUDENT_CONFIG)
    demo = data_lib.DemoData(student_config["max_sequence_length"])
    train = demo.train_batches(settings.batch_size, seed=settings.data_seed)
    held_out = demo.eval_batches("test", max_windows=settings.eval_windows)
    curve = demo.eval_batches("test", max_windows=settings.curve_windows)
    teacher_loss = heldout_cross_entropy(teacher, held_out)
    if verbose:
        print(_announcement(teacher, teacher_loss, student_config, settings, demo))
    results, best, teacher_loss = ablation.run_ablation(
        teacher,
        lambda seed: models.build_causal_lm(student_config, seed=seed),
        train,
        held_out,
        settings,
        variants=variants,
        curve_batches=curve,
        verbose=verbose,
        teacher_loss=teacher_loss,
    )
    table = ablation.format_table(results, teacher_loss)
    os.makedirs(out_dir, exist_ok=True)
    meta = {
        "backend": keras.backend.backend(),
        "settings": dataclasses.asdict(settings),
        "student_config": student_config,
        "teacher": models.teacher_metadata(teacher_dir),
        "test_plays": list(data_lib.TEST_PLAYS),
        "quick": bool(quick),
        "wall_seconds": time.perf_counter() - start,
    }
    title = f"GUIDE ablation: GPT-2 4x256 -> 2x128, {settings.num_steps} steps"
    if verbose:
        print()
        print(table)
    ablation.write_outputs(results, best, teacher_loss, out_dir, meta, title=title)
    if verbose:
        print(
            f"\nWrote {out_dir}/results.csv, results.json, ablation.png, "
            f"best_student.keras in {time.perf_counter() - start:.0f}s."
        )
    return results, teacher_loss


def _settings(quick, num_steps, batch_size, learning_rate):
    settings = dataclasses.replace(QUICK if quick else DEFAULT)
    if num_steps is not None:
        settings.num_steps = int(num_steps)
    if batch_size is not None:
        settings.batch_size = int(batch_size)
    if learning_rate is not None:
        settings.peak_learning_rate = float(learning_rate)
    return settings


def _teacher_dir(out_dir, teacher_dir, train_teacher, verbose):
    """The folder of the teacher to use, trained there first if asked."""
    if not train_teacher:
        return teacher_dir or models.ASSETS_DIR
    from keras_guide.demo import teacher as teacher_lib

    teacher_dir = os.path.join(out_dir, "teacher")
    teacher_lib.train_teacher(teacher_dir, verbose=verbose)
    return teacher_dir


def _announcement(teacher, teacher_loss, student_config, settings, demo):
    windows = (
        "" if settings.eval_windows is None else f", {settings.eval_windows} windows"
    )
    return (
        f"keras-guide demo on {keras.backend.backend()}: teacher GPT-2 "
        f"{teacher.backbone.num_layers}x{teacher.backbone.hidden_dim}, held-out "
        f"loss {teacher_loss:.4f}; students GPT-2 {student_config['num_layers']}x"
        f"{student_config['hidden_dim']}, {settings.num_steps} steps of "
        f"{settings.batch_size}x{demo.sequence_length} tokens; test plays: "
        f"{', '.join(data_lib.TEST_PLAYS)} ({demo.num_tokens['test']} tokens"
        f"{windows})."
    )
