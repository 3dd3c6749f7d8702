"""`keras-guide distill`: a student trained with the `Distiller` on text."""

import json
import os

from keras_guide.callbacks import heldout_cross_entropy
from keras_guide.distillation import Distiller
from keras_guide.distillation import LogitsDistillation
from keras_guide.workflows import checkpoint
from keras_guide.workflows import text
from keras_guide.workflows import training


def distiller_arguments(kd_options=None):
    """Maps `{"temperature": τ, "student_loss_weight": α}` to `Distiller` arguments."""
    options = dict(kd_options or {})
    arguments = {}
    if "temperature" in options:
        arguments["distillation_losses"] = LogitsDistillation(
            temperature=options.pop("temperature"))
    if "student_loss_weight" in options:
        arguments["student_loss_weight"] = options.pop("student_loss_weight")
    if options:
        raise ValueError(
            "`kd_options` accepts 'temperature' and 'student_loss_weight'. "
            f"Received: kd_options={kd_options!r}"
        )
    return arguments


def distill(teacher, student, windows, out_dir, num_steps=1000, batch_size=16,
            learning_rate=1e-3, warmup_steps=None, kd_options=None,
            checkpoint_every=200, start_step=0, seed=0, verbose=True):
    """Trains `student` with the `Distiller` (CE + KD) on tokenized text.

    Writes `out_dir/student.keras` at the end, `out_dir/distill.json` (the
    result and the history) and, every `checkpoint_every` steps and at the
    end, a checkpoint in `checkpoint.checkpoint_dir(out_dir)`.

    Args:
        teacher, student: causal LMs over the same vocabulary.
        windows: `(train, held_out)` windows from `text.text_windows`.
        out_dir: the output folder.
        num_steps, batch_size, learning_rate, warmup_steps: the budget; the
            warm-up defaults to a tenth of the steps.
        kd_options: `{"temperature": τ, "student_loss_weight": α}`.
        checkpoint_every: steps between checkpoints (and evaluations).
        start_step: the step to continue from: a resumed run passes the step
            and the student `checkpoint.restore` returned; the optimizer's
            state is then read from the same checkpoint. The data order is
            the same as the interrupted run's.
        seed: fixes the data order.
        verbose: progress bar.

    Returns:
        dict with `held_out_loss`, `teacher_loss`, `steps`, `start_step`,
        `train_seconds`, `tokens`.
    """
    batches = text.Batches(*windows[0], batch_size=batch_size, seed=seed)
    held = text.eval_batches(*windows[1], batch_size=max(batch_size, 16))
    warmup = warmup_steps if warmup_steps is not None else max(1, num_steps // 10)
    optimizer = training.adamw(learning_rate, num_steps, warmup)
    distiller = Distiller(teacher, student, **distiller_arguments(kd_options))
    distiller.compile(optimizer=optimizer)
    directory = checkpoint.checkpoint_dir(out_dir)
    if start_step:
        checkpoint.restore_optimizer(directory, optimizer, student.trainable_variables)

    def save_checkpoint(step, _loss):
        if step == start_step or step % checkpoint_every and step != num_steps:
            return
        checkpoint.save(directory, student, optimizer, step, num_steps)

    history = training.train(
        distiller, batches, num_steps, start_step=start_step,
        evaluate=lambda _: heldout_cross_entropy(student, held),
        eval_every=max(1, min(checkpoint_every, num_steps)), verbose=verbose,
        label=f"Distilling {num_steps - start_step} steps", on_eval=save_checkpoint,
    )
    student.save(os.path.join(out_dir, "student.keras"))
    result = {
        "held_out_loss": history["eval_loss"][-1],
        "teacher_loss": heldout_cross_entropy(teacher, held),
        "steps": num_steps,
        "start_step": start_step,
        "train_seconds": history["train_seconds"],
        "tokens": history["tokens"],
    }
    with open(os.path.join(out_dir, "distill.json"), "w") as f:
        json.dump({**result, "history": history}, f, indent=1)
    return result
