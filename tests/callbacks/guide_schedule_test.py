import math

import keras
import pytest

from keras_guide.callbacks import GuideSchedule
from keras_guide.callbacks import scheduled_value
from keras_guide.distillation import Distiller
from keras_guide.regularizers import GuideRegularizer
from tests.harness import models as tiny


def test_scheduled_value_endpoints_and_midpoints():
    assert scheduled_value(0, 2.0, 0.0, 10, "linear") == 2.0
    assert scheduled_value(5, 2.0, 0.0, 10, "linear") == pytest.approx(1.0)
    assert scheduled_value(25, 2.0, 0.0, 10, "linear") == 0.0
    assert scheduled_value(0, 2.0, 0.5, 10, "cosine") == pytest.approx(2.0)
    assert scheduled_value(5, 2.0, 0.5, 10, "cosine") == pytest.approx(1.25)
    assert scheduled_value(3, 2.0, 0.5, 10, "cosine") == pytest.approx(
        0.5 + 1.5 * 0.5 * (1 + math.cos(math.pi * 0.3))
    )
    assert scheduled_value(10, 2.0, 0.5, 10, "cosine") == pytest.approx(0.5)
    assert scheduled_value(7, 2.0, 0.0, 10, "constant") == 2.0


def test_invalid_arguments_name_them():
    with pytest.raises(ValueError, match="Received: kind='exp'"):
        GuideSchedule(10, "exp", guide_strength=(1.0, 0.0))
    with pytest.raises(ValueError, match="Received: steps=0"):
        GuideSchedule(0, guide_strength=(1.0, 0.0))
    with pytest.raises(ValueError, match="Received: kd_weight='high'"):
        GuideSchedule(10, kd_weight="high")
    with pytest.raises(ValueError, match="at least one"):
        GuideSchedule(10)


def _distiller(strength=1.0):
    probe = tiny.dense_lm(seed=0)
    target = tiny.numpy(probe.get_layer("head").kernel) + 0.5
    student = tiny.dense_lm(
        seed=0, kernel_regularizer=GuideRegularizer(target, strength)
    )
    distiller = Distiller(tiny.dense_lm(width=8, seed=1, scale=4.0), student)
    distiller.compile(optimizer=keras.optimizers.SGD(1e-3))
    return distiller


class _BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


def test_schedule_changes_what_the_compiled_step_computes():
    x, y, weight = tiny.token_batch(rows=4, seed=1)
    distiller = _distiller()
    schedule = GuideSchedule(
        2,
        "linear",
        guide_strength=(1.0, 0.0),
        kd_weight=(0.5, 0.0),
        temperature=(1.0, 4.0),
    )
    recorder = _BatchLogs()
    history = distiller.fit(
        x,
        y,
        sample_weight=weight,
        batch_size=4,
        epochs=4,
        verbose=0,
        callbacks=[schedule, recorder],
    ).history
    guide = [logs["guide_loss"] for logs in recorder.logs]
    assert guide[0] > 0.1 and guide[1] > 0 and guide[1] < guide[0]
    assert guide[2] == 0.0 and guide[3] == 0.0
    last = recorder.logs[-1]
    assert last["loss"] == pytest.approx(0.5 * last["student_loss"], rel=1e-5)
    assert float(tiny.numpy(distiller.temperature)) == 4.0
    assert float(tiny.numpy(distiller.kd_weight)) == 0.0
    strength = distiller.student.get_layer("head").kernel.regularizer.strength
    assert float(tiny.numpy(strength)) == 0.0
    assert history["guide_strength"] == [1.0, 0.5, 0.0, 0.0]
    assert history["temperature"][-1] == 4.0


def test_callable_schedules_are_accepted():
    x, y, weight = tiny.token_batch(rows=4, seed=2)
    distiller = _distiller()
    schedule = GuideSchedule(
        1, guide_strength=keras.optimizers.schedules.ExponentialDecay(1.0, 1, 0.5)
    )
    distiller.fit(x, y, sample_weight=weight, epochs=3, verbose=0, callbacks=[schedule])
    strength = distiller.student.get_layer("head").kernel.regularizer.strength
    assert float(tiny.numpy(strength)) == pytest.approx(0.25)


def test_schedules_a_plain_student_with_guide_regularizers():
    x, y, weight = tiny.token_batch(rows=4, seed=3)
    student = _distiller().student
    student.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    recorder = _BatchLogs()
    student.fit(
        x,
        y,
        epochs=3,
        verbose=0,
        callbacks=[GuideSchedule(1, "linear", guide_strength=(1.0, 0.0)), recorder],
    )
    unregularized = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y, student.predict(x, verbose=0)
    )
    assert recorder.logs[0]["loss"] > recorder.logs[-1]["loss"] + 0.1
    assert recorder.logs[-1]["loss"] == pytest.approx(float(unregularized), abs=1e-2)


def test_missing_targets_raise_when_training_starts():
    x, y, _ = tiny.token_batch(rows=4, seed=4)
    plain = tiny.dense_lm(seed=0)
    plain.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    with pytest.raises(ValueError, match="no `GuideRegularizer`"):
        plain.fit(
            x, y, verbose=0, callbacks=[GuideSchedule(5, guide_strength=(1.0, 0.0))]
        )
    with pytest.raises(ValueError, match="has no `temperature` variable"):
        plain.fit(x, y, verbose=0, callbacks=[GuideSchedule(5, temperature=(2.0, 1.0))])
