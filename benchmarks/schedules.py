"""Learning-rate schedules the benchmarks use (the library's runs use cosine).

`inverse_sqrt` is a schedule factory for `keras_guide.workflows.training.adamw`
and `ablation.Settings(schedule=...)`.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_guide")
class WarmupInverseSqrt(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then `peak · sqrt(warmup_steps / step)`.

    An anytime schedule: the rate at step `n` does not depend on the total
    budget, so the model after `n` steps of a long run is the model a run of
    budget `n` would give. The long-budget ablation uses it to read every
    budget off one run per variant.
    """

    def __init__(self, peak, warmup_steps):
        self.peak = float(peak)
        self.warmup_steps = max(1, int(warmup_steps))

    def __call__(self, step):
        step = keras.ops.cast(step, "float32") + 1.0
        warmup = float(self.warmup_steps)
        return self.peak * keras.ops.minimum(
            step / warmup, keras.ops.sqrt(warmup / keras.ops.maximum(step, warmup))
        )

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


def inverse_sqrt(peak, num_steps, warmup_steps):
    """`WarmupInverseSqrt(peak, warmup_steps)`; `num_steps` is unused (the
    schedule does not depend on the budget)."""
    return WarmupInverseSqrt(peak, warmup_steps)
