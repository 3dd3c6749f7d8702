"""Trains the demo's teacher on the training plays and writes it to the assets.

The recipe is fixed here so that `scripts/train_demo_teacher.py` (and
`keras-guide demo --train-teacher`) reproduce the shipped teacher: a
`GPT2CausalLM` with `models.TEACHER_CONFIG`, AdamW with warm-up and cosine
decay, batches of 32 windows of 128 tokens in the fixed order of seed 0. The
validation play (never the test plays) is watched during training, and the
weights with the lowest validation loss are kept, rounded to float16 (as they
are shipped); the recorded losses are those of the rounded weights.
"""

import csv
import os
import shutil
import tempfile
import time

from keras_guide.demo import data as data_lib
from keras_guide.demo import models
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.workflows import training

CURVE_CSV = "teacher_curve.csv"
CURVE_PNG = "teacher_curve.png"

RECIPE = {
    "batch_size": 32,
    "sequence_length": 128,
    "num_steps": 2500,
    "peak_learning_rate": 2e-3,
    "warmup_steps": 100,
    "weight_decay": 0.01,
    "data_seed": 0,
    "init_seed": 0,
    "eval_every": 100,
}


def write_curve(history, directory):
    """Writes the teacher's loss curve as CSV (step, train, validation) and PNG."""
    path = os.path.join(directory, CURVE_CSV)
    evals = dict(zip(history["eval_steps"], history["eval_loss"]))
    trains = dict(zip(history["train_steps"], history["train_loss"]))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "tokens", "train_loss", "validation_loss"])
        tokens_per_step = RECIPE["batch_size"] * RECIPE["sequence_length"]
        for step in sorted(set(evals) | set(trains)):
            writer.writerow(
                [
                    step,
                    step * tokens_per_step,
                    f"{trains[step]:.5f}" if step in trains else "",
                    f"{evals[step]:.5f}" if step in evals else "",
                ]
            )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        history["train_steps"],
        history["train_loss"],
        label="train (window mean)",
        lw=1,
        alpha=0.7,
    )
    ax.plot(
        history["eval_steps"], history["eval_loss"], "o-", label="validation play", ms=3
    )
    ax.set_xlabel("step (32 × 128 tokens)")
    ax.set_ylabel("token cross-entropy (nats)")
    ax.set_ylim(top=min(8.0, max(history["train_loss"][:1] + [5.0])))
    ax.set_title("Demo teacher (GPT-2 4×256, BPE 2048) on the plays")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(directory, CURVE_PNG), dpi=110)
    plt.close(fig)


def train_teacher(
    directory=models.ASSETS_DIR, num_steps=None, verbose=True, config=None
):
    """Trains the teacher with `RECIPE` and saves it to `directory`.

    Args:
        directory: where the weights, config, CSV and PNG go.
        num_steps: overrides `RECIPE["num_steps"]` (for tests).
        verbose: progress bar.
        config: overrides `models.TEACHER_CONFIG` (for tests).

    Returns:
        dict, the training record that is also stored in the config JSON.
    """
    import keras

    recipe = dict(RECIPE)
    if num_steps is not None:
        recipe["num_steps"] = int(num_steps)
        recipe["eval_every"] = max(1, min(recipe["eval_every"], int(num_steps)))
    demo = data_lib.DemoData(recipe["sequence_length"])
    batches = demo.train_batches(recipe["batch_size"], seed=recipe["data_seed"])
    model = models.build_causal_lm(
        dict(config or models.TEACHER_CONFIG), seed=recipe["init_seed"]
    )
    os.makedirs(directory, exist_ok=True)
    start = time.perf_counter()
    history, best = _train_keeping_best(model, batches, demo, recipe, verbose)
    wall = time.perf_counter() - start
    models.round_to_float16(model)
    best["loss"] = heldout_cross_entropy(model, demo.eval_batches("validation"))
    test_loss = heldout_cross_entropy(model, demo.eval_batches("test"))
    record = {
        "recipe": recipe,
        "backend": keras.backend.backend(),
        "train_tokens": history["tokens"],
        "train_tokens_at_best": best["step"] * batches.tokens_per_batch,
        "best_step": best["step"],
        "validation_loss": best["loss"],
        "test_loss": test_loss,
        "train_seconds": history["train_seconds"],
        "wall_seconds": wall,
        "corpus_train_tokens": demo.num_tokens["train"],
        "command": "python scripts/train_demo_teacher.py",
    }
    models.save_teacher(model, directory, extra={"training": record})
    write_curve(history, directory)
    if verbose:
        print(
            f"Teacher: validation loss {best['loss']:.4f} at step {best['step']}, "
            f"test loss {test_loss:.4f}, {history['tokens'] / 1e6:.1f}M tokens, "
            f"{wall / 60:.1f} min -> {directory}"
        )
    return record


def _train_keeping_best(model, batches, demo, recipe, verbose):
    """Trains `model` by `recipe` and leaves it at the weights with the lowest
    validation loss; returns the history and `{"loss", "step"}` of the best."""
    model.compile(
        optimizer=training.adamw(
            recipe["peak_learning_rate"],
            recipe["num_steps"],
            recipe["warmup_steps"],
            recipe["weight_decay"],
        ),
        loss=training.causal_lm_loss(),
    )
    validation = demo.eval_batches("validation")
    best = {"loss": float("inf"), "step": 0}
    scratch = tempfile.mkdtemp(prefix="keras_guide_teacher_")
    best_path = os.path.join(scratch, "best.weights.h5")

    def keep_best(step, loss):
        if loss < best["loss"]:
            best.update(loss=loss, step=int(step))
            model.save_weights(best_path)

    history = training.train(
        model,
        batches,
        recipe["num_steps"],
        evaluate=lambda m: heldout_cross_entropy(m, validation),
        eval_every=recipe["eval_every"],
        log_every=10,
        verbose=verbose,
        label="Training the demo teacher",
        on_eval=keep_best,
    )
    model.load_weights(best_path)
    shutil.rmtree(scratch, ignore_errors=True)
    return history, best
