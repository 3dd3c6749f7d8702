import math

import keras
import pytest

from keras_guide.callbacks import GapMonitor
from keras_guide.callbacks import gap_closed
from keras_guide.distillation import Distiller
from keras_guide.evaluation import heldout_cross_entropy
from tests.harness import models as tiny


def test_gap_closed_formula():
    assert gap_closed(4.0, baseline_loss=5.0, teacher_loss=3.0) == pytest.approx(0.5)
    assert gap_closed(5.0, 5.0, 3.0) == 0.0
    assert gap_closed(3.0, 5.0, 3.0) == pytest.approx(1.0)
    assert gap_closed(5.5, 5.0, 3.0) == pytest.approx(-0.25)
    assert math.isnan(gap_closed(4.0, 3.0, 3.5))


def test_heldout_cross_entropy_is_the_token_average_over_the_whole_set():
    model = tiny.dense_lm(seed=0, scale=4.0)
    x, y, weight = tiny.token_batch(rows=7, seed=1)
    want = tiny.ce_reference(y, tiny.numpy(model.predict(x, verbose=0)), weight)
    assert heldout_cross_entropy(model, (x, y, weight), batch_size=3) == pytest.approx(
        want, rel=1e-5
    )
    batches = [(x[:4], y[:4], weight[:4]), (x[4:], y[4:], weight[4:])]
    assert heldout_cross_entropy(model, batches) == pytest.approx(want, rel=1e-5)


class _CountingTeacher(keras.Model):
    """Wraps a model and counts `predict_on_batch` calls."""

    def __init__(self, model):
        super().__init__(name="counting_teacher")
        self.model = model
        self.calls = 0

    def call(self, inputs):
        return self.model(inputs)

    def predict_on_batch(self, x):
        self.calls += 1
        return super().predict_on_batch(x)


def test_gap_closed_is_logged_each_epoch_and_the_teacher_runs_once():
    teacher = tiny.dense_lm(width=8, seed=1, scale=4.0)
    distiller = Distiller(teacher, tiny.dense_lm(seed=0))
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y, weight = tiny.token_batch(rows=8, seed=2)
    val = tiny.token_batch(rows=6, seed=3)
    counting = _CountingTeacher(teacher)
    baseline = 3.0
    monitor = GapMonitor(val, baseline_loss=baseline, teacher=counting, batch_size=4)
    history = distiller.fit(
        x, y, sample_weight=weight, epochs=2, verbose=0, callbacks=[monitor]
    ).history
    assert counting.calls == 2  # one pass over the 6 rows, at training start
    teacher_loss = tiny.ce_reference(
        val[1], tiny.numpy(teacher.predict(val[0], verbose=0)), val[2]
    )
    student_loss = tiny.ce_reference(
        val[1], tiny.numpy(distiller.student.predict(val[0], verbose=0)), val[2]
    )
    assert history["teacher_loss"][-1] == pytest.approx(teacher_loss, rel=1e-5)
    assert history["heldout_loss"][-1] == pytest.approx(student_loss, rel=1e-5)
    assert history["gap_closed"][-1] == pytest.approx(
        (baseline - student_loss) / (baseline - teacher_loss), rel=1e-4
    )
    assert len(history["gap_closed"]) == 2


def test_a_plain_student_needs_a_teacher_or_its_loss():
    student = tiny.dense_lm(seed=0)
    student.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y, _ = tiny.token_batch(rows=4, seed=4)
    with pytest.raises(ValueError, match="pass `teacher=` or `teacher_loss=`"):
        student.fit(x, y, verbose=0, callbacks=[GapMonitor((x, y), baseline_loss=3.0)])
    monitor = GapMonitor((x, y), baseline_loss=3.0, teacher_loss=1.0)
    history = student.fit(x, y, verbose=0, callbacks=[monitor]).history
    student_loss = tiny.ce_reference(y, tiny.numpy(student.predict(x, verbose=0)))
    assert history["gap_closed"][0] == pytest.approx(
        (3.0 - student_loss) / 2.0, rel=1e-4
    )


def test_an_empty_gap_is_refused():
    student = tiny.dense_lm(seed=0)
    student.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y, _ = tiny.token_batch(rows=4, seed=5)
    with pytest.raises(ValueError, match="Received: baseline_loss=2.0"):
        student.fit(
            x,
            y,
            verbose=0,
            callbacks=[GapMonitor((x, y), baseline_loss=2.0, teacher_loss=2.0)],
        )
