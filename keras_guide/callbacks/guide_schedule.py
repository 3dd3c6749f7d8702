"""`GuideSchedule`: anneals the guide strength, the KD weight and the temperature."""

import math

import keras
import numpy as np

from keras_guide import _backend
from keras_guide.regularizers import track_guide_state
from keras_guide.regularizers.guide_regularizer import check_strength

KINDS = ("constant", "linear", "cosine")


def scheduled_value(step, start, end, steps, kind="cosine"):
    """The value of a schedule from `start` to `end` over `steps` steps.

    With `r = min(step / steps, 1)`: `constant` gives `start`; `linear` gives
    `start + (end − start) · r`; `cosine` gives
    `end + (start − end) · (1 + cos(π r)) / 2`. After `steps` the value stays
    at `end` (except `constant`).

    Args:
        step: int. The training step, an integer `≥ 0`.
        start: float. The value at step 0.
        end: float. The value from step `steps` on.
        steps: int. The length of the decay, a positive integer.
        kind: str. `"constant"`, `"linear"` or `"cosine"`. Defaults to
            `"cosine"`.

    Returns:
        A Python float.

    Raises:
        ValueError: for an unknown `kind` or non-positive `steps`.

    Example:
    >>> scheduled_value(5, 1.0, 0.0, 10, "linear")
    0.5
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(
            f"`steps` must be a positive integer. Received: steps={steps!r}"
        )
    if kind == "constant":
        return float(start)
    ratio = min(max(step, 0) / steps, 1.0)
    if kind == "linear":
        return float(start + (end - start) * ratio)
    return float(end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * ratio)))


class GuideSchedule(keras.callbacks.Callback):
    """Anneals GUIDE's guide strength `λ`, the KD weight and the temperature.

    Before each training step it sets each scheduled quantity to its value at
    the current step (counted from the optimizer's iterations, so a run
    resumed by `keras.callbacks.BackupAndRestore` continues the schedule).
    The quantities are non-trainable variables, so nothing retraces; on JAX
    the running fit's state is synced first (`_backend.assign_during_fit`).
    The current values are added to the epoch logs.

    Each of `guide_strength`, `kd_weight` and `temperature` is `None` (left
    alone), a number (constant), a `(start, end)` pair decayed with `kind`
    over `steps`, or a callable `step -> value` (a
    `keras.optimizers.schedules.LearningRateSchedule` qualifies).

    Args:
        steps: int. The number of steps over which `(start, end)` pairs
            decay.
        kind: str. `"constant"`, `"linear"` or `"cosine"`. Defaults to
            `"cosine"`.
        guide_strength: float, `(start, end)` tuple, callable or None.
            Schedule of `λ` for every `GuideRegularizer` of the model (of
            `model.student` for a `Distiller`). Defaults to `None` (left
            alone).
        kd_weight: float, `(start, end)` tuple, callable or None. Schedule of
            a `Distiller`'s KD weight (`β_kd`). Defaults to `None` (left
            alone).
        temperature: float, `(start, end)` tuple, callable or None. Schedule
            of a `Distiller`'s temperature `τ` (`> 0`). Defaults to `None`
            (left alone).

    Every value a schedule can take must be finite, `≥ 0` for
    `guide_strength` and `kd_weight` (a negative one pushes training away
    from the teacher) and `> 0` for `temperature`: numbers and `(start,
    end)` pairs (whose values all lie between the two) are checked here,
    callables at each step, before the step runs.

    Raises:
        ValueError: for an unknown `kind`, a malformed schedule, a value out
            of range, no schedule at all, and (when training starts) a
            scheduled quantity the model does not have.

    Example:
    >>> schedule = GuideSchedule(1000, guide_strength=(1e-2, 0.0))
    >>> # distiller.fit(data, epochs=3, callbacks=[schedule])

    Reference: arXiv 2510.06502; docs/method.md §5.
    """

    def __init__(
        self,
        steps,
        kind="cosine",
        guide_strength=None,
        kd_weight=None,
        temperature=None,
    ):
        super().__init__()
        scheduled_value(0, 0.0, 0.0, steps, kind)
        self.steps = int(steps)
        self.kind = kind
        self.schedules = {}
        for name, spec in (
            ("guide_strength", guide_strength),
            ("kd_weight", kd_weight),
            ("temperature", temperature),
        ):
            if spec is not None:
                self.schedules[name] = self._as_function(name, spec)
        if not self.schedules:
            raise ValueError(
                "`GuideSchedule` needs at least one of `guide_strength`, "
                "`kd_weight` or `temperature`. Received: none"
            )
        self._step = None
        self._targets = {}
        self._last = {}

    @staticmethod
    def _check_value(name, value, where=""):
        """`value` as a float, if `name` may take it; else a `ValueError`."""
        if name == "temperature":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not (math.isfinite(value) and value > 0)
            ):
                raise ValueError(
                    f"The temperature schedule must stay finite and > 0{where}. "
                    f"Received: temperature={value!r}"
                )
            return float(value)
        return check_strength(value, name, where)

    def _as_function(self, name, spec):
        if callable(spec):
            return lambda step: float(keras.ops.convert_to_numpy(spec(step)))
        if isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(
            spec, bool
        ):
            value = self._check_value(name, spec)
            return lambda step: value
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            start, end = (
                self._check_value(name, v, " at its start and end") for v in spec
            )
            return lambda step: scheduled_value(step, start, end, self.steps, self.kind)
        raise ValueError(
            f"`{name}` must be None, a number, a (start, end) pair or a "
            f"callable step -> value. Received: {name}={spec!r}"
        )

    def on_train_begin(self, logs=None):
        self._step = None
        self._last = {}
        self._targets = {}
        model = self.model
        for name in self.schedules:
            if name == "guide_strength":
                owner = getattr(model, "student", model)
                regularizers = track_guide_state(owner)
                if not regularizers:
                    raise ValueError(
                        "`guide_strength` is scheduled, but the model "
                        f"`{owner.name}` has no `GuideRegularizer` on its "
                        "weights. Attach them (`guide(..., regularize=...)`) "
                        "or drop `guide_strength`. Received: guide_strength "
                        "schedule for a model without guide regularizers"
                    )
                strengths = {id(r.strength): r.strength for r in regularizers}
                self._targets[name] = list(strengths.values())
            else:
                variable = getattr(model, name, None)
                if not isinstance(variable, keras.Variable):
                    raise ValueError(
                        f"`{name}` is scheduled, but the model `{model.name}` "
                        f"has no `{name}` variable: schedule it on a "
                        "`keras_guide.distillation.Distiller` with a "
                        "`LogitsDistillation` term. Received: model of type "
                        f"{type(model).__name__}"
                    )
                self._targets[name] = [variable]

    def on_train_batch_begin(self, batch, logs=None):
        if self._step is None:
            iterations = self.model.optimizer.iterations
            self._step = int(keras.ops.convert_to_numpy(iterations))
        for name, schedule in self.schedules.items():
            value = self._check_value(
                name, schedule(self._step), f" at step {self._step}"
            )
            if self._last.get(name) != value:
                for variable in self._targets[name]:
                    _backend.assign_during_fit(self.model, variable, value)
                self._last[name] = value
        self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self._last)
