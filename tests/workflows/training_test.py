import keras
import numpy as np
import pytest

from keras_guide.demo import training


def test_warmup_inverse_sqrt_is_linear_then_one_over_sqrt_step():
    schedule = training.WarmupInverseSqrt(peak=4e-3, warmup_steps=10)
    value = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))
    # Optimizer iteration k is step k + 1 of the schedule.
    np.testing.assert_allclose(value(0), 4e-4, rtol=1e-6)
    np.testing.assert_allclose(value(9), 4e-3, rtol=1e-6)
    np.testing.assert_allclose(value(39), 2e-3, rtol=1e-6)  # 4× the warm-up: half
    np.testing.assert_allclose(value(999), 4e-3 / 10, rtol=1e-6)
    restored = training.WarmupInverseSqrt.from_config(schedule.get_config())
    assert restored.get_config() == {"peak": 4e-3, "warmup_steps": 10}


def test_adamw_schedules():
    optimizer = training.adamw(1e-3, 100, 10, schedule="inverse_sqrt")
    assert isinstance(optimizer._learning_rate, training.WarmupInverseSqrt)
    with pytest.raises(ValueError, match="schedule='step'"):
        training.adamw(1e-3, 100, 10, schedule="step")
