"""The terms a `Distiller` can add to the student's loss, behind one interface.

Each term is a `DistillationLoss`: it says which outputs it compares, creates
the state it trains or schedules, and computes its own loss; the `Distiller`
only gathers the outputs and sums the weighted terms, so a new kind of term
is a new subclass. `LogitsDistillation` and `FeatureDistillation` carry the
same names and arguments as their `keras.distillation` namesakes, so code
written for Keras' distiller switches by changing its import. The math is in
`keras_guide.distillation.losses`.

Reference: arXiv 2510.06502.
"""

import keras
import numpy as np

from keras_guide.distillation import losses
from keras_guide.distillation.losses import check_temperature
from keras_guide.distillation.offline import OfflineTeacher

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


class DistillationLoss:
    """What a `Distiller` asks of each term of its loss.

    A term compares either the two models' logits (`layer_names()` is None) or
    the outputs of one layer of each; it may own state that trains or is
    scheduled with the Distiller (`build`), and it computes its own loss
    (`compute_loss`), logged under `metric_name` (terms of one name are
    summed in the log). The Distiller adds `β_i · compute_loss(...)` to the
    loss, in the order of its `distillation_losses`.

    A term whose `accepts_offline_teacher` is true reads the teacher's logits
    from the targets when they carry an offline teacher
    (`offline_teacher_dataset`), and the teacher is then not run for it.
    """

    metric_name = "distillation_loss"
    accepts_offline_teacher = False

    def layer_names(self):
        """`(teacher_layer_name, student_layer_name)` whose outputs this term
        compares (`None` in the pair: that model's output), or `None` for the
        two models' logits."""
        return None

    def build(self, distiller, weight, teacher_width=None, student_width=None):
        """Creates the term's state on `distiller`, so that it is tracked,
        trained, saved and restored with it, and returns it.

        Called once, in term order, after the Distiller's own weights.

        Args:
            distiller: the `Distiller`.
            weight: the term's weight, the non-trainable variable `β_i`.
            teacher_width, student_width: the last dimension of the layer
                outputs the term compares (None for a term of the logits).

        Returns:
            The state `compute_loss` receives, or None.
        """
        return None

    def compute_loss(
        self, teacher_outputs, student_outputs, sample_weight=None, state=None
    ):
        """The term's unweighted loss, a float32 scalar.

        Args:
            teacher_outputs: the teacher's logits or layer output, float32 and
                without gradient; an `OfflineTeacher` when the targets carry
                one and the term `accepts_offline_teacher`.
            student_outputs: the student's, float32.
            sample_weight: per-token weights (the padding mask) or None.
            state: what `build` returned.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `compute_loss`."
        )


@keras.saving.register_keras_serializable(package="keras_guide")
class LogitsDistillation(DistillationLoss):
    """Distills the teacher's output distribution into the student's.

    Adds `τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`, averaged over the tokens
    `sample_weight` keeps (`keras_guide.distillation.kd_loss`). The
    temperature lives in `Distiller.temperature`, a variable a schedule may
    change during `fit`.

    Args:
        temperature: float. `τ > 0`. The default, 1.0, is the teacher's own
            distribution, measured closer to the teacher than 2.0 at the
            same held-out loss on a real pretrained teacher (README,
            "Distillation on the real teacher"); higher values flatten a
            large vocabulary's distribution. Defaults to `1.0`.
        loss: str. Only `"kl_divergence"` (the default) is accepted, the loss
            the method defines; the argument exists for `keras.distillation`
            compatibility. Defaults to `"kl_divergence"`.

    Raises:
        ValueError: for a non-positive temperature or another `loss`.

    Example:
    >>> term = LogitsDistillation(temperature=2.0)

    Reference: arXiv 2510.06502; Hinton, Vinyals, Dean (2015).
    """

    metric_name = "kd_loss"
    accepts_offline_teacher = True

    def __init__(self, temperature=1.0, loss="kl_divergence"):
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

    def build(self, distiller, weight, teacher_width=None, student_width=None):
        """Gives `distiller` its `temperature` variable and its `kd_weight`
        (this term's weight), which a `GuideSchedule` may anneal."""
        count = sum(
            isinstance(t, LogitsDistillation) for t in distiller.distillation_losses
        )
        if count > 1:
            raise ValueError(
                "At most one `LogitsDistillation` may be given (the KD term "
                f"has one temperature). Received: {count} LogitsDistillation terms"
            )
        distiller.kd_weight = weight
        distiller.temperature = distiller.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.temperature),
            dtype="float32",
            trainable=False,
            name="temperature",
        )
        return distiller.temperature

    def compute_loss(
        self, teacher_outputs, student_outputs, sample_weight=None, state=None
    ):
        """`kd_loss` at the temperature `state` (this term's own without one);
        `top_k_kd_loss` against an offline teacher's stored top-k logits."""
        temperature = self.temperature if state is None else state
        if isinstance(teacher_outputs, OfflineTeacher):
            return losses.top_k_kd_loss(
                teacher_outputs.logits,
                teacher_outputs.indices,
                student_outputs,
                temperature,
                sample_weight,
                teacher_outputs.log_normalizer,
                teacher_outputs.temperature,
            )
        return losses.kd_loss(
            teacher_outputs, student_outputs, temperature, sample_weight
        )

    def get_config(self):
        return {"temperature": self.temperature, "loss": self.loss}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_guide")
class FeatureDistillation(DistillationLoss):
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
        loss: str. Only `"mse"` (the default) is accepted. Defaults to
            `"mse"`.
        teacher_layer_name: str or None. Name of the teacher layer; `None` for
            the teacher's output. Defaults to `None`.
        student_layer_name: str or None. Name of the student layer; `None` for
            the student's output. Defaults to `None`.
        projection: array, `Projection`, report or None. Optional `(d_T, d_S)`
            matrix `M`, a `keras_guide.initializers.Projection`, or a report
            with a `.projection` (what `keras_guide.guide()` returns). Defaults
            to `None` (no projection: `P` starts as the identity, `b = 0`).

    Raises:
        ValueError: for another `loss`, or a projection that is not 2-D.

    Example:
    >>> term = FeatureDistillation(
    ...     teacher_layer_name="transformer_layer_3",
    ...     student_layer_name="transformer_layer_0",
    ... )

    Reference: arXiv 2510.06502; Romero et al., "FitNets" (2015).
    """

    metric_name = "hidden_loss"

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

    def layer_names(self):
        return self.teacher_layer_name, self.student_layer_name

    def build(self, distiller, weight, teacher_width=None, student_width=None):
        """Appends this term's projector to `distiller.projectors` (None for
        equal widths and no projection) and returns it."""
        projector = _projector(
            self, student_width, teacher_width, len(distiller.projectors)
        )
        distiller.projectors.append(projector)
        return projector

    def compute_loss(
        self, teacher_outputs, student_outputs, sample_weight=None, state=None
    ):
        """`hidden_state_loss` of the projected student states (`state` is the
        projector) against the teacher's."""
        if state is not None:
            student_outputs = state(student_outputs)
        return losses.hidden_state_loss(student_outputs, teacher_outputs, sample_weight)

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
            "`keras_guide.initializers.Projection`, or a guide report holding one. "
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


def _projector(term, d_student, d_teacher, index):
    """The learnable map `h_S ↦ h_S P + b` from the student's width to the
    teacher's, or `None` for equal widths and no projection."""
    if term.projection is None and d_student == d_teacher:
        return None
    if term.projection is None:
        kernel = np.eye(d_student, d_teacher)
        bias = np.zeros((d_teacher,))
    else:
        if term.projection.shape != (d_teacher, d_student):
            raise ValueError(
                "The projection of `FeatureDistillation("
                f"teacher_layer_name={term.teacher_layer_name!r}, "
                f"student_layer_name={term.student_layer_name!r})` must have "
                f"shape (d_teacher, d_student) = ({d_teacher}, {d_student}), "
                "the widths of those layers' outputs; pass the GUIDE report of "
                "this teacher and student. Received: projection of shape "
                f"{term.projection.shape}"
            )
        kernel = term.projection.T
        bias = term.projection_mean
    projector = keras.layers.Dense(
        d_teacher, dtype="float32", name=f"projector_{index}"
    )
    projector.build((None, d_student))
    projector.kernel.assign(kernel.astype("float32"))
    projector.bias.assign(bias.astype("float32"))
    return projector


def from_keras_distillation_loss(term):
    """Converts a `keras.distillation` term into ours, or returns ours as is.

    Raises:
        ValueError: for a term that is neither, naming its type.
    """
    if isinstance(term, DistillationLoss):
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
