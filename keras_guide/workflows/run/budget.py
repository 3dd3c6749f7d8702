"""How long a student trains, and how: the `Budget` and its KD setting.

A `Budget` is what `distill` trains for and what `compress` records. Its
`kd` is the one knowledge-distillation setting: `{"temperature": τ,
"student_loss_weight": α}` for the `Distiller` (keys left out take its
defaults; `{}` takes them all), with `"top_k": k` to distil from the
teacher's stored top-k logits (and `"targets_from"`: `"llama.cpp"` or
`"keras"`, to compute them before training), or `None` for cross-entropy on
the text alone. `distiller_arguments` turns it into the `Distiller`'s
arguments and `kd_settings` into the values a run records.
"""

import dataclasses
import inspect
import math

import numpy as np

from keras_guide.distillation import Distiller
from keras_guide.distillation import LogitsDistillation

# The distillation recipe: the live teacher's full distribution at τ = 1,
# weighted equally with the data's cross-entropy (README, "Distillation on
# real teachers").
RECIPE = {"temperature": 1.0, "student_loss_weight": 0.5}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long the student trains, and how.

    Attributes:
        steps: int. Optimizer steps. Defaults to 150.
        batch_size: int. Windows per step. Defaults to 8.
        learning_rate: float. The peak AdamW rate (warm-up, then cosine to a
            tenth). Defaults to 2e-3.
        warmup_steps: int. Steps of linear warm-up; `None` for a tenth of
            `steps` (`warmup`). Defaults to `None`.
        kd: dict. The KD setting (see the module docstring), or `None` for
            cross-entropy alone (the teacher does not run during training).
            Defaults to `RECIPE`.
        checkpoint_every: int. Steps between checkpoints (and evaluations).
            Defaults to 25.
        seed: int. Data order and dropout. Defaults to 0.
        search_steps: int. Steps each candidate shape of `compress` trains
            (the run's first steps, with its recipe) before the candidates
            are compared; the chosen one continues from them. 0 compares
            them right after guided initialization. Defaults to 0.

    Raises:
        ValueError: a count that is not an integer in range, a learning rate
            that is not a finite number > 0, or a `kd` that
            `distiller_arguments` refuses, naming the attribute.
    """

    steps: int = 150
    batch_size: int = 8
    learning_rate: float = 2e-3
    warmup_steps: int = None
    kd: dict = dataclasses.field(default_factory=lambda: dict(RECIPE))
    checkpoint_every: int = 25
    seed: int = 0
    search_steps: int = 0

    def __post_init__(self):
        for name, low in (
            ("steps", 1),
            ("batch_size", 1),
            ("warmup_steps", 0),
            ("checkpoint_every", 1),
            ("seed", 0),
            ("search_steps", 0),
        ):
            value = getattr(self, name)
            if name == "warmup_steps" and value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or (value < low)
            ):
                raise ValueError(
                    f"`{name}` must be an integer ≥ {low}. Received: {name}={value!r}"
                )
        rate = self.learning_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float, np.number))
            or not (math.isfinite(rate) and rate > 0)
        ):
            raise ValueError(
                "`learning_rate` must be a finite number > 0 (a negative rate "
                f"trains uphill). Received: learning_rate={rate!r}"
            )
        distiller_arguments(self.kd)

    @property
    def warmup(self):
        """The warm-up steps: `warmup_steps`, or a tenth of `steps` (at least 1)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return max(1, self.steps // 10)


def distiller_arguments(kd):
    """The `Distiller`'s arguments for the KD setting `kd`.

    Args:
        kd: dict. `{"temperature": τ, "student_loss_weight": α}` (`{}`: the
            Distiller's defaults), with `"top_k"` and `"targets_from"` (how
            the teacher is read, not Distiller arguments); `None` or `False`
            for no distillation.

    Returns:
        A dict of keyword arguments of `Distiller`, or `None` for no
        distillation.

    Raises:
        ValueError: a `top_k` that is not a positive integer, or another key.
    """
    if kd is None or kd is False:
        return None
    options = dict(kd)
    # How the teacher is read, not a Distiller argument.
    top_k = options.pop("top_k", None)
    options.pop("targets_from", None)
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(
            "`kd['top_k']` must be a positive integer (the teacher's logits "
            f"stored per token). Received: top_k={top_k!r}"
        )
    arguments = {}
    if "temperature" in options:
        arguments["distillation_losses"] = LogitsDistillation(
            temperature=options.pop("temperature")
        )
    if "student_loss_weight" in options:
        arguments["student_loss_weight"] = options.pop("student_loss_weight")
    if options:
        raise ValueError(
            "`kd` accepts 'temperature', 'student_loss_weight' and 'top_k' (with "
            f"'targets_from'). Received: kd={kd!r}"
        )
    return arguments


def _default(function, name):
    return inspect.signature(function).parameters[name].default


def kd_settings(kd):
    """The KD setting `kd` as a run records it: the temperature and the
    student-loss weight with the `Distiller`'s defaults filled in, `top_k`
    (0: the live teacher) and, where set, `targets_from`; cross-entropy
    alone (`None`) records τ = 0 and α = 1."""
    if kd is None or kd is False:
        kd = {"temperature": 0.0, "student_loss_weight": 1.0}
    return {
        "temperature": float(
            kd.get("temperature", _default(LogitsDistillation, "temperature"))
        ),
        "student_loss_weight": float(
            kd.get("student_loss_weight", _default(Distiller, "student_loss_weight"))
        ),
        "top_k": int(kd.get("top_k") or 0),
        # Only where set: the settings of runs before the option stay as they were.
        **({"targets_from": kd["targets_from"]} if kd.get("targets_from") else {}),
    }
