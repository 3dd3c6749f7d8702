"""Offline teacher: the teacher's top-k logits, computed once for a dataset.

This is one-time host work (the teacher's `predict_on_batch` per batch, then
`keras.ops.top_k`), not per-step code. The `Distiller` reads the result from
the targets and then never runs the teacher for the logits term.

Reference: arXiv 2510.06502.
"""

import collections

import keras
import numpy as np

from keras_guide._predict import predictor
from keras_guide.distillation.losses import check_temperature

LABELS = "labels"
TOP_K_LOGITS = "teacher_top_k_logits"
TOP_K_INDICES = "teacher_top_k_indices"
LOG_NORMALIZER = "teacher_log_normalizer"
TEMPERATURE = "teacher_temperature"


class OfflineTeacher(
    collections.namedtuple(
        "OfflineTeacher", ["logits", "indices", "log_normalizer", "temperature"]
    )
):
    """A teacher read from the targets: its top-k logits and their class ids,
    and, when stored, each token's log-normalizer and the temperature it was
    computed at (else None); `top_k_kd_loss`'s teacher arguments."""

    __slots__ = ()


def _num_rows(x):
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise ValueError(f"`x` holds no arrays. Received: x={x!r}")
    return int(np.shape(leaves[0])[0])


def teacher_top_k(teacher, x, k, batch_size=32, temperature=None):
    """Runs `teacher` once over `x` and keeps its `k` largest logits per token.

    Pass the result inside the targets, beside the labels,
    `{"labels": y, **teacher_top_k(teacher, x, k, temperature=τ)}`, in
    batches from a dataset (`offline_teacher_dataset` builds one). The
    `Distiller` then uses `top_k_kd_loss` and does not run the teacher for
    its logits term, in every epoch.

    With `temperature`, each token's log-normalizer `logsumexp(z_T/τ)` is
    stored too, so that the loss keeps the teacher's tail beyond the top `k`
    as one class (exact KL over `k + 1` classes) while the Distiller's
    temperature is `τ`; without it (or at another temperature) the teacher
    is renormalized over its top `k`, which overstates the loss unless those
    classes hold most of its mass. Both are exact for `k = V`.

    Args:
        teacher: a model mapping `x` to logits `(..., V)`.
        x: the inputs, an array or a dict of arrays with a leading batch axis.
        k: how many logits to keep per token, `1 ≤ k ≤ V`.
        batch_size: rows per teacher call.
        temperature: the KD temperature `τ` the normalizer is computed at
            (the Distiller's), or None to store none.

    Returns:
        `{"teacher_top_k_logits": float32 (..., k),
        "teacher_top_k_indices": int32 (..., k)}` NumPy arrays aligned
        with `x`, plus, with `temperature`, `"teacher_log_normalizer"`
        (float32 `(...)`) and `"teacher_temperature"` (float32, one per row).
        Memory: `8 · k` (+ 4) bytes per token.

    Raises:
        ValueError: for `k` outside `[1, V]`, a non-positive `batch_size` or
            temperature.

    Example:
    >>> targets = teacher_top_k(teacher, x, k=64)  # doctest: +SKIP
    >>> targets["teacher_top_k_logits"].shape  # doctest: +SKIP
    (1000, 128, 64)
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(
            "`batch_size` must be a positive integer. Received: "
            f"batch_size={batch_size!r}"
        )
    if temperature is not None:
        temperature = check_temperature(temperature)
    rows = _num_rows(x)
    predict = predictor(teacher)
    values, indices, normalizers = [], [], []
    for start in range(0, rows, batch_size):
        batch = keras.tree.map_structure(lambda a: a[start : start + batch_size], x)
        logits = predict(batch)
        vocabulary = int(np.shape(logits)[-1])
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocabulary:
            raise ValueError(
                f"`k` must be an integer in [1, {vocabulary}] (the teacher's "
                f"vocabulary size). Received: k={k!r}"
            )
        logits = keras.ops.cast(logits, "float32")
        top_values, top_indices = keras.ops.top_k(logits, k, sorted=True)
        values.append(keras.ops.convert_to_numpy(top_values).astype(np.float32))
        indices.append(keras.ops.convert_to_numpy(top_indices).astype(np.int32))
        if temperature is not None:
            log_z = keras.ops.logsumexp(logits / temperature, axis=-1)
            normalizers.append(keras.ops.convert_to_numpy(log_z).astype(np.float32))
    targets = {
        TOP_K_LOGITS: np.concatenate(values),
        TOP_K_INDICES: np.concatenate(indices),
    }
    if temperature is not None:
        targets[LOG_NORMALIZER] = np.concatenate(normalizers)
        targets[TEMPERATURE] = np.full((rows,), temperature, np.float32)
    return targets


def split_targets(y):
    """Returns `(labels, teacher)` from targets: `teacher` is None, or an
    `OfflineTeacher` (its last two fields None when not stored)."""
    keys = (TOP_K_LOGITS, TOP_K_INDICES, LOG_NORMALIZER, TEMPERATURE)
    if isinstance(y, dict) and any(key in y for key in keys):
        missing = [key for key in keys[:2] if key not in y]
        if (LOG_NORMALIZER in y) != (TEMPERATURE in y):
            missing += [key for key in keys[2:] if key not in y]
        if missing:
            raise ValueError(
                f"Offline-teacher targets lack {missing}: pass the arrays "
                "`teacher_top_k` returns, all of them. Received: keys "
                f"{sorted(y)}"
            )
        return y.get(LABELS), OfflineTeacher(*(y.get(key) for key in keys))
    return y, None


class _OfflineBatches(keras.utils.PyDataset):
    """Fixed-order `(x, {"labels", top-k…}, sample_weight)` batches from arrays."""

    def __init__(self, x, targets, sample_weight, batch_size):
        super().__init__()
        self._x, self._targets, self._weight = x, targets, sample_weight
        self._rows = _num_rows(x)
        self._batch_size = batch_size

    def __len__(self):
        return -(-self._rows // self._batch_size)

    def __getitem__(self, index):
        rows = slice(index * self._batch_size, (index + 1) * self._batch_size)
        take = lambda a: a[rows]  # noqa: E731
        x = keras.tree.map_structure(take, self._x)
        targets = {key: take(value) for key, value in self._targets.items()}
        if self._weight is None:
            return x, targets
        return x, targets, take(self._weight)


def offline_teacher_dataset(
    teacher, x, y, sample_weight=None, k=64, batch_size=32, temperature=1.0
):
    """Runs the teacher once and returns batches that carry its top-k logits.

    A `keras.utils.PyDataset` of `(x, {"labels": y, **teacher_top_k(...)},
    sample_weight)` batches, in a fixed order, to
    pass to `Distiller.fit` / `evaluate` for any number of epochs: the teacher
    never runs again for the logits term. (Keras' array inputs refuse
    per-token sample weights beside a dict of targets; a dataset does not.)

    Args:
        teacher: a model mapping `x` to logits `(..., V)`.
        x: the inputs, an array or a dict of arrays.
        y: the labels, an array.
        sample_weight: optional per-token weights (the padding mask).
        k: how many teacher logits to keep per token, `1 ≤ k ≤ V`.
        batch_size: rows per batch, for the teacher pass and the dataset.
        temperature: the Distiller's KD temperature (default 1.0, as
            `LogitsDistillation`'s): the teacher's tail beyond its top `k`
            counts as one class while the Distiller trains at it. None
            stores no normalizer (the top-k renormalized loss).

    Returns:
        A `keras.utils.PyDataset`.

    Raises:
        ValueError: as `teacher_top_k`.

    Example:
    >>> data = offline_teacher_dataset(teacher, x, y, mask, k=64)  # doctest: +SKIP
    >>> distiller.fit(data, epochs=3)  # doctest: +SKIP
    """
    targets = {
        LABELS: np.asarray(y),
        **teacher_top_k(teacher, x, k, batch_size, temperature),
    }
    weight = None if sample_weight is None else np.asarray(sample_weight)
    return _OfflineBatches(x, targets, weight, batch_size)
