"""Data-aware choices: the heads, neurons and blocks a student keeps.

The math is in docs/method.md §10.

Pure NumPy over statistics measured on calibration text (see
`keras_guide.calibration`). A unit's importance is the energy of what it
writes into the residual stream, `Σ_t ‖x_t,u W_u‖²`: a head's output through
its slice of the output kernel, a neuron's activation times its row of the
down kernel. Unlike the mean activation (Minitron), it counts the weight the
unit writes with, so it is the squared error the stream suffers when the unit
is dropped, if units were uncorrelated.

Reference: arXiv 2510.06502.
"""

import numpy as np

from keras_guide.initializers import selection


def _check_scores(scores, count, name):
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Importance scores for {name} must be a finite 1-D array. "
            f"Received: shape {scores.shape}"
        )
    if not isinstance(count, (int, np.integer)) or not 1 <= count <= scores.size:
        raise ValueError(
            f"Cannot keep {count} of {scores.size} {name}: keep between 1 and "
            f"{scores.size}. Received: count={count!r}"
        )
    return scores


def top_indices(scores, count, name="units"):
    """The `count` highest-scoring indices, sorted ascending.

    Ties go to the lower index (a stable sort), so equal scores give the
    same choice everywhere.

    Example:
    >>> top_indices([0.1, 3.0, 2.0, 3.0], 2).tolist()
    [1, 3]
    """
    scores = _check_scores(scores, count, name)
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:count]).astype(np.int64)


def gqa_importance_indices(
    head_scores, teacher_kv_heads, student_heads, student_kv_heads
):
    """Keeps the most important key/value groups, then their most important query heads.

    A group's score is the sum of its query heads' scores; inside each kept
    group the student keeps its `h_S / g_S` best query heads, so every kept
    query head still reads the key/value head it was trained with.

    Args:
        head_scores: `(h_T,)` query-head importances.
        teacher_kv_heads: `g_T`.
        student_heads: `h_S`.
        student_kv_heads: `g_S`.

    Returns:
        `(query_indices, kv_indices)` as `selection.gqa_head_indices` returns
        them: int64 arrays of shapes `(h_S,)` and `(g_S,)`.
    """
    head_scores = np.asarray(head_scores, dtype=np.float64)
    teacher_heads = head_scores.size
    # Validates the grouping exactly as the uniform rule does.
    selection.gqa_head_indices(
        teacher_heads, teacher_kv_heads, student_heads, student_kv_heads
    )
    group = teacher_heads // teacher_kv_heads
    per_group = student_heads // student_kv_heads
    groups = head_scores.reshape(teacher_kv_heads, group)
    kv = top_indices(groups.sum(axis=1), student_kv_heads, "key/value groups")
    query = np.concatenate(
        [g * group + top_indices(groups[g], per_group, "query heads") for g in kv]
    )
    return query.astype(np.int64), kv


def important_blocks(block_scores, count):
    """The `count` blocks that change the residual stream most, in order.

    Args:
        block_scores: `(n_T,)` per-block change, e.g. `1 − cos(x_in, x_out)`
            averaged over tokens (ShortGPT's block influence).
        count: `n_S`.

    Returns:
        A sorted list of `count` teacher block indices.
    """
    return top_indices(block_scores, count, "blocks").tolist()
