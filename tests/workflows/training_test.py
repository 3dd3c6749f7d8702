import pytest

from keras_guide.workflows import training


def test_adamw_schedules():
    def constant(peak, num_steps, warmup_steps):
        return peak / 2

    optimizer = training.adamw(1e-3, 100, 10, schedule=constant)
    assert float(optimizer.learning_rate) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="schedule='step'"):
        training.adamw(1e-3, 100, 10, schedule="step")
