"""`GuidedInitializer`: a teacher weight, transformed into a student's initial value."""

import keras
import ml_dtypes
import numpy as np

from keras_guide import _checks
from keras_guide import _host
from keras_guide.initializers import folding
from keras_guide.initializers import projection as projection_lib
from keras_guide.initializers import selection

_SELECT_RULES = ("uniform", "first")


def guided_value(
    teacher, shape, project=None, select=None, gains=None, scale=1.0, name="weight"
):
    """Computes a student weight from a teacher weight (host NumPy, float64).

    In order: norm gains are folded (`diag(γ) W` on their axis), axes in
    `select` keep uniformly spread (`"uniform"`), leading (`"first"`) or given
    indices, axes in `project` are contracted with their projection `M`, and
    the result is multiplied by `scale`. Every other axis must already have
    the student's size.

    Args:
        teacher: the teacher weight (array or Keras variable).
        shape: the student weight's shape.
        project: `{axis: M}`, `M` a `(d_T, d_S)` matrix or a `Projection`.
        select: `{axis: "uniform" | "first" | indices}`.
        gains: `{axis: γ}` norm gains folded before anything else.
        scale: a final multiplier (e.g. `√(d_T/d_S)` for a folded norm).
        name: the weight's name, used in error messages.

    Returns:
        A float64 NumPy array of shape `shape`.

    Raises:
        ValueError: rank mismatch, a student axis larger than the teacher's,
            an axis whose sizes differ with no rule for it, a projection of
            the wrong size, or NaN/Inf in the teacher weight.
    """
    _checks.real_dtype(teacher, name)
    value = np.asarray(_host.to_numpy(teacher))
    shape = _check_shape(shape, name)
    scale = _checks.scalar(scale, "scale", where=f"`{name}`")
    _host.check_finite(value, name)
    if value.ndim != len(shape):
        raise ValueError(
            f"Teacher weight `{name}` has rank {value.ndim} (shape "
            f"{value.shape}) but the student weight has rank {len(shape)} "
            f"(shape {shape}). Guide a student weight from the teacher weight "
            "with the same role and layout."
        )
    project = {a % value.ndim: m for a, m in (project or {}).items()}
    select = {a % value.ndim: r for a, r in (select or {}).items()}
    for axis, (t_size, s_size) in enumerate(zip(value.shape, shape)):
        if s_size > t_size:
            raise ValueError(
                f"The student weight `{name}` is larger than the teacher's on "
                f"axis {axis}: student shape {shape}, teacher shape "
                f"{value.shape}. GUIDE only shrinks; make the student at most "
                "as wide as the teacher on every axis."
            )
        if s_size != t_size and axis not in project and axis not in select:
            raise ValueError(
                f"Axis {axis} of `{name}` differs (teacher shape {value.shape}, "
                f"student shape {shape}) and has no rule. Add it to `project` "
                "(residual-stream axes) or `select` (heads, neurons, positions)."
            )
    value = value.astype(np.float64)
    for axis, gain in (gains or {}).items():
        value = folding.fold_gain(value, gain, axis, name)
    for axis, rule in sorted(select.items()):
        value = folding.select_axis(
            value,
            _indices(rule, value.shape[axis], shape[axis], axis, name),
            axis,
            name,
        )
    for axis, matrix in sorted(project.items()):
        matrix = projection_lib.as_projection(matrix).matrix
        if matrix.shape != (value.shape[axis], shape[axis]):
            raise ValueError(
                f"The projection for axis {axis} of `{name}` has shape "
                f"{matrix.shape}, expected ({value.shape[axis]}, {shape[axis]}) "
                f"for teacher shape {value.shape} and student shape {shape}."
            )
        value = folding.project_axis(value, matrix, axis, name)
    return value * scale


def _check_shape(shape, name):
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(
        not isinstance(d, (bool, np.bool_))
        and isinstance(d, (int, np.integer))
        and d >= 0
        for d in dims
    ):
        raise ValueError(
            f"The student shape for `{name}` must be a tuple of non-negative "
            f"integers. Received: shape={shape!r}"
        )
    return tuple(int(d) for d in dims)


def _rule(rule, axis, name):
    """A selection rule checked on its own: a known name, or 1-D whole-number
    indices (sizes are checked against the weights when they are known)."""
    if isinstance(rule, str):
        if rule not in _SELECT_RULES:
            raise ValueError(
                f"Unknown selection rule for axis {axis} of `{name}`; expected "
                f"one of {_SELECT_RULES} or a list of indices. Received: {rule!r}"
            )
        return rule
    return _checks.indices(rule, "select", where=f"axis {axis} of `{name}`")


def _indices(rule, teacher_size, student_size, axis, name):
    rule = _rule(rule, axis, name)
    if isinstance(rule, str):
        if rule == "first":
            return np.arange(student_size)
        return selection.uniform_indices(
            teacher_size, student_size, f"axis {axis} of `{name}`"
        )
    if rule.shape != (student_size,) or len(set(rule.tolist())) != student_size:
        raise ValueError(
            f"{rule.size} indices were given for axis {axis} of `{name}`, "
            f"whose student size is {student_size}: give {student_size} distinct "
            f"indices in [0, {teacher_size}). Received: {rule.tolist()[:16]}"
        )
    return rule


def check_fits(value, dtype, name="weight"):
    """Refuses a value that `dtype` cannot hold (float16 tops out at 65,504,
    float32 at 3.4e38): it would be stored as inf."""
    dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
    if not dtype.startswith(("float", "bfloat")):
        return
    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    largest = float(ml_dtypes.finfo(np_dtype).max)
    peak = float(np.max(np.abs(value))) if np.size(value) else 0.0
    if peak > largest:
        advice = (
            "Build the student in float32 or bfloat16 (build_student(..., "
            "dtype='float32'))."
            if dtype == "float16"
            else "Rescale the teacher weight, or build the student in float64."
        )
        raise ValueError(
            f"The guided `{name}` reaches {peak:.4g}, beyond {dtype}'s largest "
            f"value {largest:.6g}: it would be stored as inf. {advice}"
        )


def to_dtype(value, dtype):
    """Casts a float64 host array to `dtype` in NumPy, identically on every
    backend (callers first refuse what the dtype cannot hold: `check_fits`)."""
    dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    return np.asarray(value).astype(np_dtype)


@keras.saving.register_keras_serializable(package="keras_guide")
class GuidedInitializer(keras.initializers.Initializer):
    """Initializes a student weight from a teacher weight, GUIDE-style.

    When a layer calls it with the student's shape and dtype, it returns
    `scale · P(S(diag(γ) W_T))` where `S` keeps the selected indices of the
    `select` axes and `P` contracts each `project` axis with its projection
    `M` (`Mᵀ W_T` for a reading kernel, `W_T M` for a writing one). The math
    runs once on the host in float64 (see `guided_value`), so the same teacher
    gives bit-identical student weights on every backend.

    A teacher weight is not serialized: `get_config` keeps the recipe and the
    `fallback` initializer, so a saved student loads in a process that has no
    teacher (its saved weights then overwrite the fallback values).

    Args:
        teacher: a `keras.Variable`, array or None. The teacher weight (Keras
            variable or array), or `None`. Defaults to `None` (no teacher: the
            `fallback` initializes).
        project: dict or None. `{axis: M}` residual-stream axes and their
            projection. Defaults to `None` (no axis projected).
        select: dict or None. `{axis: "uniform" | "first" | indices}`.
            Defaults to `None` (no axis selected).
        gains: dict or None. `{axis: γ}` norm gains to fold into this
            (reading) weight. Defaults to `None` (no gain folded).
        scale: float. Final multiplier, e.g. `√(d_T/d_S)` after a folded norm.
            Defaults to `1.0`.
        fallback: str or `keras.initializers.Initializer`. The initializer
            used when there is no teacher. Defaults to `"glorot_uniform"`.
        name: str or None. The teacher weight's name, for error messages and
            reports. Defaults to `None` (the teacher variable's `path`, else
            `"teacher weight"`).

    Example:
    >>> import numpy as np, keras
    >>> table = np.random.default_rng(0).normal(size=(50, 16))
    >>> from keras_guide.initializers import pca_projection
    >>> m = pca_projection(table, 8)
    >>> layer = keras.layers.Embedding(
    ...     50, 8, embeddings_initializer=GuidedInitializer(table, {1: m}))

    Reference: arXiv 2510.06502.
    """

    def __init__(
        self,
        teacher=None,
        project=None,
        select=None,
        gains=None,
        scale=1.0,
        fallback="glorot_uniform",
        name=None,
    ):
        self.name = name or getattr(teacher, "path", None) or "teacher weight"
        teacher = _checks.array_like(teacher, self.name, role="Teacher weight")
        self.teacher = teacher
        for arg, value in (("project", project), ("select", select), ("gains", gains)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(
                    f"`{arg}` for `{self.name}` must be a dict keyed by axis. "
                    f"Received: {arg} of type {type(value).__name__}"
                )
        self.project = project or {}
        self.select = select or {}
        self.gains = gains or {}
        self.scale = _checks.scalar(scale, "scale", where=f"`{self.name}`")
        self.fallback = keras.initializers.get(fallback)
        if teacher is not None:
            _checks.real_dtype(teacher, self.name)
            ndim = len(teacher.shape)
            for arg, axes in (
                ("project", self.project),
                ("select", self.select),
                ("gains", self.gains),
            ):
                for axis in axes:
                    if (
                        not isinstance(axis, (int, np.integer))
                        or not -ndim <= axis < ndim
                    ):
                        raise ValueError(
                            f"`{arg}` names axis {axis!r}, which `{self.name}` "
                            f"(shape {tuple(teacher.shape)}) does not have. "
                            "Use integer axes of the teacher weight."
                        )
            self._check_rules(teacher.shape)

    def _check_rules(self, teacher_shape):
        """Checks projections, selection rules and gains when the initializer
        is made, not when a layer first calls it."""
        for axis, matrix in self.project.items():
            matrix = projection_lib.as_projection(
                matrix, name=f"projection for axis {axis} of `{self.name}`"
            ).matrix
            if matrix.shape[0] != teacher_shape[axis]:
                raise ValueError(
                    f"The projection for axis {axis} of `{self.name}` has shape "
                    f"{matrix.shape}; the teacher weight (shape "
                    f"{tuple(teacher_shape)}) has {teacher_shape[axis]} entries "
                    "on that axis."
                )
        for axis, rule in self.select.items():
            _rule(rule, axis, self.name)
        for axis, gain in self.gains.items():
            gain = _checks.real_array(gain, f"norm gain for `{self.name}`")
            if gain.shape != (teacher_shape[axis],):
                raise ValueError(
                    f"The norm gain for axis {axis} of `{self.name}` has shape "
                    f"{gain.shape}; the teacher weight (shape "
                    f"{tuple(teacher_shape)}) has {teacher_shape[axis]} entries "
                    "on that axis."
                )

    def __call__(self, shape, dtype=None):
        if self.teacher is None:
            return self.fallback(shape, dtype=dtype)
        value = guided_value(
            self.teacher,
            shape,
            project=self.project,
            select=self.select,
            gains=self.gains,
            scale=self.scale,
            name=self.name,
        )
        check_fits(value, dtype, self.name)
        value = to_dtype(value, dtype)
        return keras.ops.convert_to_tensor(
            value,
            dtype=keras.backend.standardize_dtype(dtype or keras.backend.floatx()),
        )

    def get_config(self):
        select = {
            str(axis): rule if isinstance(rule, str) else np.asarray(rule).tolist()
            for axis, rule in self.select.items()
        }
        return {
            "teacher": None,
            "project": None,
            "select": select,
            "gains": None,
            "scale": self.scale,
            "fallback": keras.initializers.serialize(self.fallback),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["select"] = {int(a): r for a, r in (config.get("select") or {}).items()}
        config["fallback"] = keras.initializers.deserialize(config["fallback"])
        return cls(**config)
