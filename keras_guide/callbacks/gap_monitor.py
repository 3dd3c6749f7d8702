"""`GapMonitor`: the fraction of the baseline-to-teacher gap a student closes."""

import keras
import numpy as np

from keras_guide.evaluation import heldout_cross_entropy


def gap_closed(loss, baseline_loss, teacher_loss):
    """The fraction of the baseline-to-teacher gap that `loss` closes.

    `gap_closed = (L_base − L) / (L_base − L_teacher)` (docs/method.md §7):
    0 at the baseline, 1 at the teacher, negative below the baseline.

    Args:
        loss: float. `L`, the student's held-out loss.
        baseline_loss: float. `L_base`, that of the same student trained from
            random initialization.
        teacher_loss: float. `L_teacher`.

    Returns:
        A Python float; NaN when the teacher is not better than the baseline
        (`L_teacher ≥ L_base`), where the fraction means nothing.

    Example:
    >>> gap_closed(4.0, baseline_loss=5.0, teacher_loss=3.0)
    0.5
    """
    if not baseline_loss > teacher_loss:
        return float("nan")
    return (baseline_loss - loss) / (baseline_loss - teacher_loss)


class GapMonitor(keras.callbacks.Callback):
    """Adds `gap_closed(L, L_base, L_teacher)` to the epoch logs.

    `L` is the student's held-out token cross-entropy after each epoch,
    `L_base` that of the same student trained from random initialization
    (given), and `L_teacher` the teacher's, evaluated once when training
    starts (docs/method.md §7). The logs also get `heldout_loss` and
    `teacher_loss`. With a `Distiller`, the student and teacher are taken from
    it; with a plain model, that model is the student and `teacher` (or
    `teacher_loss`) must be given.

    Args:
        validation_data: tuple or iterable. `(x, y)` or `(x, y,
            sample_weight)` arrays, or an iterable of such batches.
        baseline_loss: float. `L_base`.
        teacher: a `keras.Model` or None. The teacher model. Defaults to
            `None` (`model.teacher`).
        teacher_loss: float or None. `L_teacher`, if already known (then the
            teacher is not run). Defaults to `None` (the teacher is evaluated
            when training starts).
        batch_size: int. Rows per call when `validation_data` holds arrays.
            Defaults to `32`.

    Raises:
        ValueError: at training start, without a teacher or `teacher_loss`,
            or if `L_base` equals `L_teacher` (the gap is empty).

    Example:
    >>> monitor = GapMonitor((x_val, y_val, w_val), baseline_loss=3.1)  # doctest: +SKIP
    >>> distiller.fit(x, y, epochs=3, callbacks=[monitor])  # doctest: +SKIP

    Reference: arXiv 2510.06502, which reports GUIDE's gain as the gap closed.
    """

    def __init__(
        self,
        validation_data,
        baseline_loss,
        teacher=None,
        teacher_loss=None,
        batch_size=32,
    ):
        super().__init__()
        self.validation_data = validation_data
        self.baseline_loss = float(baseline_loss)
        if not np.isfinite(self.baseline_loss):
            raise ValueError(
                "`baseline_loss` must be finite. "
                f"Received: baseline_loss={baseline_loss}"
            )
        self.teacher = teacher
        self.teacher_loss = None if teacher_loss is None else float(teacher_loss)
        self.batch_size = batch_size

    def on_train_begin(self, logs=None):
        if self.teacher_loss is None:
            teacher = self.teacher or getattr(self.model, "teacher", None)
            if teacher is None:
                raise ValueError(
                    "`GapMonitor` needs the teacher's loss: pass `teacher=` or "
                    "`teacher_loss=`, or train a `Distiller`. Received: a model "
                    f"of type {type(self.model).__name__} and neither argument"
                )
            self.teacher_loss = heldout_cross_entropy(
                teacher, self.validation_data, self.batch_size
            )
        if self.baseline_loss == self.teacher_loss:
            raise ValueError(
                "`gap_closed` is undefined when the baseline's loss equals the "
                f"teacher's ({self.teacher_loss}). Received: "
                f"baseline_loss={self.baseline_loss}"
            )

    def on_epoch_end(self, epoch, logs=None):
        student = getattr(self.model, "student", self.model)
        loss = heldout_cross_entropy(student, self.validation_data, self.batch_size)
        gap = gap_closed(loss, self.baseline_loss, self.teacher_loss)
        if logs is not None:
            logs.update(
                {
                    "heldout_loss": loss,
                    "teacher_loss": self.teacher_loss,
                    "gap_closed": gap,
                }
            )
