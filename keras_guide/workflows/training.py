"""One training loop for every run: fixed batches, fixed steps, a progress bar.

Any compiled Keras model whose `train_on_batch(x, y, sample_weight)` trains on
causal-LM batches works here: a `GPT2CausalLM` compiled with a
cross-entropy loss, or a `keras_guide.distillation.Distiller`.
"""

import time

import keras
import numpy as np

from keras_guide.distribution import processes


def causal_lm_loss():
    """Token cross-entropy from logits, averaged over the tokens the weights keep."""
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"
    )


def warmup_cosine(peak, num_steps, warmup_steps):
    """Linear warm-up to `peak`, then cosine decay to `peak / 10` at `num_steps`."""
    warmup_steps = max(1, min(int(warmup_steps), int(num_steps) - 1))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=peak,
        warmup_steps=warmup_steps,
        decay_steps=max(1, int(num_steps) - warmup_steps),
        alpha=0.1,
    )


def adamw(peak, num_steps, warmup_steps, weight_decay=0.01, schedule="cosine"):
    """The workflows' optimizer: AdamW clipped at norm 1.

    Args:
        peak, num_steps, warmup_steps: the learning-rate schedule's.
        weight_decay: AdamW's decoupled weight decay.
        schedule: `"cosine"` (`warmup_cosine` over `num_steps`), or a
            callable `(peak, num_steps, warmup_steps) -> learning rate`
            (a `LearningRateSchedule` or a float).

    Raises:
        ValueError: for another `schedule`.
    """
    if isinstance(schedule, str) and schedule == "cosine":
        learning_rate = warmup_cosine(peak, num_steps, warmup_steps)
    elif callable(schedule):
        learning_rate = schedule(peak, num_steps, warmup_steps)
    else:
        raise ValueError(
            "`schedule` must be 'cosine' or a callable (peak, num_steps, "
            f"warmup_steps) -> learning rate. Received: schedule={schedule!r}"
        )
    return keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        beta_2=0.98,
        global_clipnorm=1.0,
    )


def train(
    model,
    batches,
    num_steps,
    start_step=0,
    evaluate=None,
    eval_every=None,
    log_every=None,
    verbose=True,
    label="",
    on_eval=None,
):
    """Trains `model` on batches `start_step ... num_steps - 1` of `batches`.

    Args:
        model: a compiled Keras model (see the module docstring).
        batches: a `text.Batches` (indexable by step).
        num_steps: int, the step to stop at.
        start_step: int, to resume a run.
        evaluate: callable `model -> float` (held-out loss) or None.
        eval_every: int or None; evaluates at `start_step`, every `eval_every`
            steps and at the end (evaluation time is not counted as training
            time).
        log_every: int, how many steps each recorded training loss averages.
        verbose: show a progress bar.
        label: shown before the progress bar.
        on_eval: callable `(step, loss)` called after each evaluation (for
            checkpoints).

    Returns:
        dict with `train_steps`, `train_loss` (mean loss over each logged
        window), `eval_steps`, `eval_loss`, `eval_seconds` (the training
        seconds at each evaluation), `train_seconds`, `tokens`.
    """
    log_every = log_every or max(1, num_steps // 100)
    history = {
        "train_steps": [],
        "train_loss": [],
        "eval_steps": [],
        "eval_loss": [],
        "eval_seconds": [],
        "train_seconds": 0.0,
        "tokens": 0,
    }

    def run_eval(step):
        loss = float(evaluate(model))
        history["eval_steps"].append(int(step))
        history["eval_loss"].append(loss)
        # The training seconds so far: the curve against time.
        history["eval_seconds"].append(history["train_seconds"])
        if on_eval is not None:
            on_eval(step, loss)
        return loss

    if evaluate is not None and eval_every:
        run_eval(start_step)
    if verbose and label:
        print(label)
    bar = keras.utils.Progbar(
        num_steps - start_step,
        verbose=1 if verbose else 0,
        stateful_metrics=["loss", "held_out", "tokens/s"],
    )
    window = []
    for step in range(start_step, num_steps):
        window.append(_train_step(model, batches, step, history, label))
        done = step + 1
        values = [
            ("loss", float(np.mean(window))),
            ("tokens/s", history["tokens"] / max(history["train_seconds"], 1e-9)),
        ]
        if len(window) == log_every or done == num_steps:
            history["train_steps"].append(done)
            history["train_loss"].append(float(np.mean(window)))
            window = []
        if (
            evaluate is not None
            and eval_every
            and (done % eval_every == 0 or done == num_steps)
        ):
            values.append(("held_out", run_eval(done)))
        bar.update(done - start_step, values=values)
    return history


def _train_step(model, batches, step, history, label):
    """Trains on batch `step`, counts its time and tokens; returns its loss."""
    batch = batches.batch(step)
    # Each process of a multi-process run feeds its share of the rows.
    x, y, local_weight = processes.local_rows(batch)
    begin = time.perf_counter()
    logs = model.train_on_batch(x, y, sample_weight=local_weight, return_dict=True)
    loss = float(logs["loss"])
    history["train_seconds"] += time.perf_counter() - begin
    history["tokens"] += int(np.asarray(batch[2]).sum())
    if not np.isfinite(loss):
        raise FloatingPointError(
            f"Training loss became {loss} at step {step} ({label or 'run'}). "
            "Lower the learning rate."
        )
    return loss
