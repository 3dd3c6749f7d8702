"""Offline teacher: the teacher's top-k logits, computed once for a dataset.

This is one-time host work (the teacher's `predict_on_batch` per batch, then
`keras.ops.top_k`), not per-step code. The `Distiller` reads the result from
the targets and then never runs the teacher for the logits term.

Reference: arXiv 2510.06502.
"""

import keras
import numpy as np

LABELS = "labels"
TOP_K_LOGITS = "teacher_top_k_logits"
TOP_K_INDICES = "teacher_top_k_indices"


def _num_rows(x):
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise ValueError(f"`x` holds no arrays. Received: x={x!r}")
    return int(np.shape(leaves[0])[0])


def teacher_top_k(teacher, x, k, batch_size=32):
    """Runs `teacher` once over `x` and keeps its `k` largest logits per token.

    Pass the result inside the targets, beside the labels,
    `{"labels": y, **teacher_top_k(teacher, x, k)}`, in batches from a
    dataset (`offline_teacher_dataset` builds one). The `Distiller` then uses `top_k_kd_loss` (the teacher's distribution
    renormalized over its top `k` classes; exact for `k = V`) and does not
    run the teacher for its logits term, in every epoch.

    Args:
        teacher: a model mapping `x` to logits `(..., V)`.
        x: the inputs, an array or a dict of arrays with a leading batch axis.
        k: how many logits to keep per token, `1 ≤ k ≤ V`.
        batch_size: rows per teacher call.

    Returns:
        `{"teacher_top_k_logits": float32 (..., k),
        "teacher_top_k_indices": int32 (..., k)}` NumPy arrays aligned
        with `x`. Memory: `8 · k` bytes per token.

    Raises:
        ValueError: for `k` outside `[1, V]` or a non-positive `batch_size`.

    Example:
    >>> targets = teacher_top_k(teacher, x, k=64)  # doctest: +SKIP
    >>> targets["teacher_top_k_logits"].shape  # doctest: +SKIP
    (1000, 128, 64)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    rows = _num_rows(x)
    values, indices = [], []
    for start in range(0, rows, batch_size):
        batch = keras.tree.map_structure(lambda a: a[start : start + batch_size], x)
        logits = teacher.predict_on_batch(batch)
        vocabulary = int(np.shape(logits)[-1])
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocabulary:
            raise ValueError(
                f"`k` must be an integer in [1, {vocabulary}] (the teacher's "
                f"vocabulary size). Received: k={k!r}"
            )
        top_values, top_indices = keras.ops.top_k(
            keras.ops.cast(logits, "float32"), k, sorted=True
        )
        values.append(keras.ops.convert_to_numpy(top_values).astype(np.float32))
        indices.append(keras.ops.convert_to_numpy(top_indices).astype(np.int32))
    return {
        TOP_K_LOGITS: np.concatenate(values),
        TOP_K_INDICES: np.concatenate(indices),
    }


def split_targets(y):
    """Returns `(labels, (top_k_logits, top_k_indices) or None)` from targets."""
    if isinstance(y, dict) and (TOP_K_LOGITS in y or TOP_K_INDICES in y):
        missing = {LABELS, TOP_K_LOGITS, TOP_K_INDICES} - set(y)
        missing.discard(LABELS)
        if missing:
            raise ValueError(
                "Offline-teacher targets need both "
                f"`{TOP_K_LOGITS}` and `{TOP_K_INDICES}` (as returned by "
                f"`teacher_top_k`). Received: keys {sorted(y)}"
            )
        return y.get(LABELS), (y[TOP_K_LOGITS], y[TOP_K_INDICES])
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


def offline_teacher_dataset(teacher, x, y, sample_weight=None, k=64, batch_size=32):
    """Runs the teacher once and returns batches that carry its top-k logits.

    A `keras.utils.PyDataset` of `(x, {"labels": y, "teacher_top_k_logits",
    "teacher_top_k_indices"}, sample_weight)` batches, in a fixed order, to
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

    Returns:
        A `keras.utils.PyDataset`.

    Raises:
        ValueError: as `teacher_top_k`.

    Example:
    >>> data = offline_teacher_dataset(teacher, x, y, mask, k=64)  # doctest: +SKIP
    >>> distiller.fit(data, epochs=3)  # doctest: +SKIP
    """
    targets = {LABELS: np.asarray(y), **teacher_top_k(teacher, x, k, batch_size)}
    weight = None if sample_weight is None else np.asarray(sample_weight)
    return _OfflineBatches(x, targets, weight, batch_size)
