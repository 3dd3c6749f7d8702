"""The terms a `Distiller` can add to the student's loss.

`LogitsDistillation` and `FeatureDistillation` carry the same names and
arguments as their `keras.distillation` namesakes, so code written for Keras'
distiller switches by changing its import. They hold configuration only; the
math is in `keras_guide.distillation.losses`.

Reference: arXiv 2510.06502.
"""

import keras
import numpy as np

from keras_guide.distillation.losses import check_temperature

_KL_NAMES = ("kl_divergence", "kld", "kullback_leibler_divergence")
_MSE_NAMES = ("mse", "mean_squared_error")


def _loss_name(loss):
    """A comparable name for a Keras loss given as string, function or class."""
    if isinstance(loss, str):
        return loss.lower()
    if isinstance(loss, keras.losses.Loss):
        fn = getattr(loss, "fn", None)
        return getattr(fn, "__name__", type(loss).__name__).lower()
    return getattr(loss, "__name__", repr(loss)).lower()


@keras.saving.register_keras_serializable(package="keras_guide")
class LogitsDistillation:
    """Distills the teacher's output distribution into the student's.

    Adds `τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`, averaged over the tokens
    `sample_weight` keeps (`keras_guide.distillation.kd_loss`). The
    temperature lives in `Distiller.temperature`, a variable a schedule may
    change during `fit`.

    Args:
        temperature: `τ > 0`. Defaults to 2.0, a usual value for language
            models (higher values flatten a large vocabulary's distribution).
        loss: only `"kl_divergence"` (the default) is accepted, the loss the
            method defines; the argument exists for `keras.distillation`
            compatibility.

    Raises:
        ValueError: for a non-positive temperature or another `loss`.

    Example:
    >>> term = LogitsDistillation(temperature=2.0)

    Reference: arXiv 2510.06502; Hinton, Vinyals, Dean (2015).
    """

    def __init__(self, temperature=2.0, loss="kl_divergence"):
        self.temperature = check_temperature(temperature)
        if _loss_name(loss) not in _KL_NAMES + ("kldivergence",):
            raise ValueError(
                "`LogitsDistillation` computes the KL divergence between the "
                "teacher's and the student's softened distributions from their "
                "logits; other losses are not supported. Use "
                "loss='kl_divergence' (the default). "
                f"Received: loss={loss!r}"
            )
        self.loss = "kl_divergence"

    def get_config(self):
        return {"temperature": self.temperature, "loss": self.loss}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_guide")
class FeatureDistillation:
    """Distills a teacher block's hidden states into a student block's.

    Adds `token_mean(mean_j (h_S P + b − h_T)²_j)` where `h_S` is the output of
    the student layer `student_layer_name`, `h_T` that of the teacher layer
    `teacher_layer_name` (found also inside nested models such as a KerasHub
    backbone, e.g. `"transformer_layer_0"`), and `P` (`d_S × d_T`), `b` a
    learnable projector owned by the `Distiller`.

    With a GUIDE projection `M` (`d_T × d_S`, orthonormal columns, and the row
    mean `μ` removed before the PCA) a student vector `x_S` stands for the
    teacher vector `x_S Mᵀ + μ` (docs/method.md §1), so the projector starts at
    `P = Mᵀ`, `b = μ`: the identity in the `M` basis, under which the loss is
    `‖h_S − (h_T − μ) M‖² / d_T` plus a constant the student cannot change.
    Without a projection, `P` starts as the `d_S × d_T` identity (the first
    `min(d_S, d_T)` coordinates) and `b = 0`.

    Args:
        loss: only `"mse"` (the default) is accepted.
        teacher_layer_name: name of the teacher layer; `None` for the
            teacher's output.
        student_layer_name: name of the student layer; `None` for the
            student's output.
        projection: optional `(d_T, d_S)` matrix `M`, a
            `keras_guide.Projection`, or a report with a `.projection`
            (what `keras_guide.guide()` returns).

    Raises:
        ValueError: for another `loss`, or a projection that is not 2-D.

    Example:
    >>> term = FeatureDistillation(
    ...     teacher_layer_name="transformer_layer_3",
    ...     student_layer_name="transformer_layer_0",
    ... )

    Reference: arXiv 2510.06502; Romero et al., "FitNets" (2015).
    """

    def __init__(
        self,
        loss="mse",
        teacher_layer_name=None,
        student_layer_name=None,
        projection=None,
    ):
        if _loss_name(loss) not in _MSE_NAMES + ("meansquarederror",):
            raise ValueError(
                "`FeatureDistillation` compares hidden states with the mean "
                "squared error; other losses are not supported. Use "
                f"loss='mse' (the default). Received: loss={loss!r}"
            )
        self.loss = "mse"
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name
        self.projection, self.projection_mean = _projection_arrays(projection)

    def get_config(self):
        projection = None
        if self.projection is not None:
            projection = {
                "matrix": self.projection.tolist(),
                "mean": self.projection_mean.tolist(),
            }
        return {
            "loss": self.loss,
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "projection": projection,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _projection_arrays(projection):
    """Returns `(M, μ)` as float64 arrays from any accepted projection form."""
    if projection is None:
        return None, None
    if hasattr(projection, "projection") and not hasattr(projection, "matrix"):
        projection = projection.projection
    if isinstance(projection, dict):
        matrix = np.asarray(projection["matrix"], dtype=np.float64)
        mean = projection.get("mean")
    elif hasattr(projection, "matrix"):
        matrix = np.asarray(projection.matrix, dtype=np.float64)
        mean = getattr(projection, "mean", None)
    else:
        matrix = np.asarray(keras.ops.convert_to_numpy(projection), np.float64)
        mean = None
    if matrix.ndim != 2:
        raise ValueError(
            "`projection` must be a (d_teacher, d_student) matrix, a "
            "`keras_guide.Projection`, or a guide report holding one. "
            f"Received: projection of shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(
            f"`projection` of shape {matrix.shape} holds NaN or Inf values. "
            "Recompute it from a healthy teacher."
        )
    if mean is None:
        mean = np.zeros((matrix.shape[0],))
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    if mean.shape != (matrix.shape[0],):
        raise ValueError(
            f"The projection's mean must have shape ({matrix.shape[0]},) to "
            f"match its matrix of shape {matrix.shape}. "
            f"Received: mean of shape {mean.shape}"
        )
    return matrix, mean


def from_keras_distillation_loss(term):
    """Converts a `keras.distillation` term into ours, or returns ours as is.

    Raises:
        ValueError: for a term that is neither, naming its type.
    """
    if isinstance(term, (LogitsDistillation, FeatureDistillation)):
        return term
    keras_distillation = getattr(keras, "distillation", None)
    if keras_distillation is not None:
        if isinstance(term, keras_distillation.LogitsDistillation):
            return LogitsDistillation(
                temperature=term.temperature, loss=_loss_name(term.loss)
            )
        if isinstance(term, keras_distillation.FeatureDistillation):
            return FeatureDistillation(
                loss=_loss_name(term.loss),
                teacher_layer_name=term.teacher_layer_name,
                student_layer_name=term.student_layer_name,
            )
    raise ValueError(
        "Each entry of `distillation_losses` must be a "
        "`keras_guide.distillation.LogitsDistillation` or "
        "`FeatureDistillation` (or its `keras.distillation` namesake). "
        f"Received: {type(term).__name__} {term!r}"
    )
