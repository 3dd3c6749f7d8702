"""`GuideOptions`: every option of `guide()`, checked when made.

The one vocabulary of GUIDE's choices: `guide()` builds one from its
arguments before it touches a model, the command line takes its choices from
these constants, and the ablation's variants and the benchmarks name options
through it. Options left unset (`None`, and `projection="auto"`) take the
data-aware recipe when calibration text is given, the data-free defaults
otherwise.
"""

import dataclasses
from typing import Any
from typing import Optional

import numpy as np

from keras_guide.regularizers.guide_regularizer import check_strength

BLOCKS = ("first", "all")
LAYER_MAPS = ("uniform", "first", "importance")
NORMS = ("fold", "diagonal", "reset")
SELECTS = ("uniform", "importance")
PROJECTIONS = ("auto", "pca", "activations", "channels", "select")
# What calibration text alone chooses: the data-aware recipe measured best on
# both real teachers (README, "Data-aware choices"); and the defaults without it.
DATA_AWARE = {
    "projection": "channels",
    "select": "importance",
    "layer_map": "importance",
}
DATA_FREE = {"projection": "auto", "select": "uniform", "layer_map": "uniform"}
# The choices that run the teacher on calibration text.
_DATA_AWARE_VALUES = {
    "projection": ("activations", "channels"),
    "select": ("importance",),
    "layer_map": ("importance",),
}


def _resolved(name, value, calibrated):
    """Option `name`'s value: `value` as given, or the recipe's where it is
    unset (`None`, or `projection="auto"`): `DATA_AWARE` with calibration
    text, `DATA_FREE` without."""
    unset = value is None or (
        name == "projection" and isinstance(value, str) and value == "auto"
    )
    if not unset:
        return value
    return (DATA_AWARE if calibrated else DATA_FREE)[name]


def takes_calibration(options):
    """Whether `guide(**options)` uses calibration text when it is given: a
    data-aware choice is set, or one is left unset (and takes the data-aware
    recipe). `options` is a dict of `guide`'s keyword arguments."""
    for name, values in _DATA_AWARE_VALUES.items():
        value = _resolved(name, options.get(name), calibrated=True)
        if isinstance(value, str) and value in values:
            return True
    return False


def _is_flag(value):
    return isinstance(value, (bool, np.bool_))


def _is_index(value):
    return isinstance(value, (int, np.integer)) and not _is_flag(value)


@dataclasses.dataclass(frozen=True)
class GuideOptions:
    """`guide()`'s options, checked and resolved (see `guide` for each).

    Args:
        blocks: `"first"` or `"all"`.
        layer_map: `"uniform"`, `"first"`, `"importance"`, a list of teacher
            block indices, or `None` (resolved by `calibrated`).
        projection: a name in `PROJECTIONS` or a `(d_T, d_S)` matrix /
            `Projection`.
        center: bool.
        norm: `"fold"`, `"diagonal"` or `"reset"`.
        rescale: bool.
        token_weights: `None` or `(V,)` finite non-negative weights.
        regularize: `None` or a finite strength ≥ 0.
        select: `"uniform"`, `"importance"` or `None` (resolved).
        calibrated: whether calibration text comes with them: unset options
            take `DATA_AWARE` if so, `DATA_FREE` otherwise.

    Raises:
        ValueError: any option of the wrong type or value, a data-aware
            choice without calibration, or calibration no choice uses.
    """

    blocks: str = "all"
    layer_map: Any = None
    projection: Any = "auto"
    center: bool = False
    norm: str = "diagonal"
    rescale: bool = True
    token_weights: Optional[Any] = None
    regularize: Optional[float] = None
    select: Optional[str] = None
    calibrated: bool = False

    def __post_init__(self):
        for name in DATA_AWARE:
            value = _resolved(name, getattr(self, name), self.calibrated)
            object.__setattr__(self, name, value)
        self._check()

    def _check(self):
        """Refuses an option of the wrong type or value, then calibration
        that the choices do not match (in that order)."""
        self._check_names()
        self._check_layer_map()
        if isinstance(self.projection, str) and self.projection not in PROJECTIONS:
            raise ValueError(
                f"`projection` must be one of {PROJECTIONS}, a (d_teacher, "
                "d_student) matrix or a Projection. Received: "
                f"projection={self.projection!r}"
            )
        if self.regularize is not None:
            check_strength(self.regularize, "regularize")
        self._check_token_weights()
        self._check_calibration()

    def _check_names(self):
        """The flags are booleans; `blocks`, `norm`, `select` name a choice."""
        for name in ("center", "rescale", "calibrated"):
            if not _is_flag(getattr(self, name)):
                raise ValueError(
                    f"`{name}` must be True or False. Received: "
                    f"{name}={getattr(self, name)!r}"
                )
        for name, choices in (("blocks", BLOCKS), ("norm", NORMS), ("select", SELECTS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise ValueError(
                    f"`{name}` must be one of {choices}. Received: {name}={value!r}"
                )

    def _check_layer_map(self):
        """A named map, or a non-empty list of whole block indices."""
        if isinstance(self.layer_map, str):
            if self.layer_map not in LAYER_MAPS:
                raise ValueError(
                    f"`layer_map` must be one of {LAYER_MAPS} or a list of teacher "
                    f"block indices. Received: layer_map={self.layer_map!r}"
                )
        else:
            try:
                items = list(self.layer_map)
            except TypeError:
                items = [None]
            if not items or not all(_is_index(i) for i in items):
                raise ValueError(
                    "An explicit `layer_map` is a list of whole teacher block "
                    "indices (not floats or booleans). Received: "
                    f"layer_map={self.layer_map!r}"
                )

    def _check_token_weights(self):
        """`None`, or one finite non-negative weight per token."""
        if self.token_weights is None:
            return
        weights = np.asarray(self.token_weights, dtype=np.float64)
        if weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                "`token_weights` must be finite, non-negative row weights, one "
                f"per token (shape (V,)). Received: shape {weights.shape}, "
                f"{int(np.sum(~np.isfinite(weights) | (weights < 0)))} bad values"
            )

    def _check_calibration(self):
        """Calibration text is given exactly when a choice uses it."""
        needs = self.needs_calibration
        if needs and not self.calibrated:
            raise ValueError(
                f"{', '.join(needs)} measure the teacher on calibration text; pass "
                "`calibration=` (token ids of shape (sequences, length) from the "
                "teacher's tokenizer, a few thousand tokens)."
            )
        if self.calibrated and not needs:
            raise ValueError(
                "`calibration` was given but no choice uses it: pass "
                "projection='activations' or 'channels', select='importance' "
                "and/or layer_map='importance' (or leave them unset)."
            )

    @property
    def needs_calibration(self):
        """The choices that run the teacher on calibration text, as
        `"name='value'"` strings (empty for a data-free guide)."""
        return [
            f"{name}={getattr(self, name)!r}"
            for name, values in _DATA_AWARE_VALUES.items()
            if isinstance(getattr(self, name), str) and getattr(self, name) in values
        ]

    @property
    def recipe(self):
        return "data-aware" if self.calibrated else "data-free"
