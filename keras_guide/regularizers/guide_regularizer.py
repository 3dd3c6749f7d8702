"""`GuideRegularizer`: a parameter-space pull toward the guided (teacher) value."""

import warnings

import keras
import numpy as np

from keras_guide import _backend
from keras_guide import _checks


@keras.saving.register_keras_serializable(package="keras_guide")
class GuideRegularizer(keras.regularizers.Regularizer):
    """Penalizes a student weight's distance to its guided target.

    `penalty = λ · mean((W − W*)²)` with `W*` the target (a constant, usually
    the weight's GUIDE initial value) and `λ = strength`. Keras adds it to the
    loss of every `fit` through the layer's regularization losses.

    `strength` and the target are non-trainable `keras.Variable`s, so a
    schedule can change `λ` during training without retracing. Several
    regularizers may share one strength variable (as `guide()` does), and
    `track_guide_state(model)` makes them part of the model's training state,
    which the JAX backend needs to see a change mid-`fit` (TensorFlow and
    PyTorch read the variable directly).

    The target is not serialized: it has the weight's shape, and a model's
    config (`config.json` in a `.keras` file) would otherwise hold a copy of
    every guided weight as JSON numbers. A regularizer passed to a layer
    (`kernel_regularizer=...`) is saved in that layer's config as its
    strength alone, so once reloaded it holds that strength and no target
    (`target is None`) and adds no penalty (with a warning). The regularizers
    `guide(..., regularize=λ)` attaches sit on the variables, not in a layer's
    config, and are not saved at all. To keep pulling a reloaded model toward
    its guided values, attach new regularizers built from the targets and
    call `track_guide_state`.

    Args:
        target: array, `keras.Variable` or None. The target weight `W*`
            (array or Keras variable), or `None` for a regularizer that adds
            nothing (what a reload gives).
        strength: float or a scalar `keras.Variable`. `λ`, a float or a
            shared scalar `keras.Variable`. Defaults to `1e-2`.

    Example:
    >>> import numpy as np, keras
    >>> target = np.zeros((4, 3), "float32")
    >>> layer = keras.layers.Dense(3, kernel_regularizer=GuideRegularizer(target, 0.1))

    Reference: arXiv 2510.06502 (matching the teacher in parameter space).
    """

    def __init__(self, target, strength=1e-2):
        self.target = None
        if target is not None:
            target = _checks.real_array(target, "target", role="The GuideRegularizer")
            with np.errstate(over="ignore"):
                stored = target.astype("float32")
            if not np.all(np.isfinite(stored)):
                raise ValueError(
                    f"The GuideRegularizer's `target` of shape {target.shape} has "
                    f"entries beyond float32 (largest magnitude "
                    f"{float(np.max(np.abs(target))):.3g}, float32 holds up to "
                    "3.4e38): the penalty would be inf. Rescale the target."
                )
            self.target = keras.Variable(stored, trainable=False, name="guide_target")
        if isinstance(strength, keras.Variable):
            if tuple(strength.shape) != ():
                raise ValueError(
                    "`strength` must be a scalar variable. Received: strength "
                    f"of shape {tuple(strength.shape)}"
                )
            check_strength(keras.ops.convert_to_numpy(strength), "strength")
            self.strength = strength
        else:
            strength = check_strength(strength, "strength")
            self.strength = keras.Variable(
                strength, dtype="float32", trainable=False, name="guide_strength"
            )

    def __call__(self, x):
        if self.target is None:
            return keras.ops.zeros((), dtype="float32")
        if tuple(x.shape) != tuple(self.target.shape):
            raise ValueError(
                "GuideRegularizer was attached to a weight of shape "
                f"{tuple(x.shape)}, but its target has shape "
                f"{tuple(self.target.shape)}. Attach it to the weight its "
                "target was computed for."
            )
        x = keras.ops.cast(x, "float32")
        return self.strength * keras.ops.mean(keras.ops.square(x - self.target))

    def variables(self):
        """The regularizer's state: `[strength, target]`, or `[strength]`."""
        if self.target is None:
            return [self.strength]
        return [self.strength, self.target]

    def get_config(self):
        # The target stays out: see the class docstring.
        return {
            "target": None,
            "strength": float(keras.ops.convert_to_numpy(self.strength)),
        }

    @classmethod
    def from_config(cls, config):
        # Configs saved before the target was left out still carry it.
        if config.get("target") is None:
            warnings.warn(
                "A GuideRegularizer was loaded without its target (targets are "
                "not saved with a model) and adds no penalty. To keep pulling "
                "the weights toward their guided values, attach new "
                "GuideRegularizers with the targets.",
                stacklevel=2,
            )
        return cls(**config)


def check_strength(value, name, where=""):
    """Returns `value` as a float if it is a finite, non-negative number.

    Args:
        value: the strength.
        name: the argument's name, for the message.
        where: where in a schedule the value was found (e.g. " at step 3").

    Raises:
        ValueError: naming `name`, for a bool, a non-number, a negative, NaN
            or infinite value (a negative strength pushes the weights away
            from their guided values).
    """
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, float, np.integer, np.floating))
        and not (isinstance(value, np.ndarray) and value.shape == ())
    ):
        raise ValueError(
            f"`{name}` must be a finite, non-negative number{where}. "
            f"Received: {name}={value!r}"
        )
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a finite, non-negative number{where} (a negative "
            "strength pushes the weights away from their guided values). "
            f"Received: {name}={value}"
        )
    return value


def guide_regularizers(model):
    """Returns the distinct `GuideRegularizer`s attached to `model`'s weights."""
    found = {}
    for weight in model.weights:
        regularizer = getattr(weight, "regularizer", None)
        if isinstance(regularizer, GuideRegularizer):
            found.setdefault(id(regularizer), regularizer)
    return list(found.values())


def track_guide_state(model):
    """Makes the strength and target variables of `model`'s guide regularizers
    part of its training state (not of its saved weights).

    Needed on JAX for a strength change during `fit` to take effect without
    retracing; harmless elsewhere. `guide(..., regularize=...)`, `Distiller`
    and `GuideSchedule` call it for you.

    Returns:
        The list of `GuideRegularizer`s found.
    """
    regularizers = guide_regularizers(model)
    _backend.track_state(model, [v for r in regularizers for v in r.variables()])
    return regularizers


def set_guide_strength(model, value):
    """Sets `λ` of every guide regularizer of `model`, also during a `fit`.

    Args:
        model: a `keras.Model` whose weights carry `GuideRegularizer`s.
        value: float. The new strength `λ`, finite and ≥ 0.

    Raises:
        ValueError: if `value` is negative, NaN or infinite.
    """
    value = check_strength(value, "value")
    for regularizer in guide_regularizers(model):
        _backend.assign_during_fit(model, regularizer.strength, value)
