import keras
import numpy as np

from keras_guide.workflows import training
from tests.benchmarks import load


def _schedules():
    return load("schedules")


def test_warmup_inverse_sqrt_is_linear_then_one_over_sqrt_step():
    schedules = _schedules()
    schedule = schedules.WarmupInverseSqrt(peak=4e-3, warmup_steps=10)

    def value(step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    # Optimizer iteration k is step k + 1 of the schedule.
    np.testing.assert_allclose(value(0), 4e-4, rtol=1e-6)
    np.testing.assert_allclose(value(9), 4e-3, rtol=1e-6)
    np.testing.assert_allclose(value(39), 2e-3, rtol=1e-6)  # 4× the warm-up: half
    np.testing.assert_allclose(value(999), 4e-3 / 10, rtol=1e-6)
    restored = schedules.WarmupInverseSqrt.from_config(schedule.get_config())
    assert restored.get_config() == {"peak": 4e-3, "warmup_steps": 10}


def test_adamw_takes_the_inverse_sqrt_schedule():
    schedules = _schedules()
    optimizer = training.adamw(1e-3, 100, 10, schedule=schedules.inverse_sqrt)
    assert isinstance(optimizer._learning_rate, schedules.WarmupInverseSqrt)
