"""Uniform selection of heads, neurons and channels (docs/method.md §3).

The rule of Xu et al. 2023 ("Initializing Models with Larger Ones"), which
GUIDE uses for every axis that is not the residual stream.

Reference: arXiv 2510.06502.
"""

import numpy as np

from keras_guide import _checks


def _check_sizes(teacher_size, student_size, name):
    for arg, value in (("teacher_size", teacher_size), ("student_size", student_size)):
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, (int, np.integer))
            or value < 1
        ):
            raise ValueError(
                f"`{arg}` of {name} must be a positive integer. "
                f"Received: {arg}={value!r}"
            )
    if student_size > teacher_size:
        raise ValueError(
            f"The student's {name} ({student_size}) is larger than the "
            f"teacher's ({teacher_size}); GUIDE only shrinks. Give the student "
            f"at most {teacher_size}."
        )


def uniform_indices(teacher_size, student_size, name="axis"):
    """Returns `student_size` sorted, unique indices spread over `teacher_size`.

    `arange(N_S) · (N_T / N_S)` when `N_T % N_S == 0`, else
    `round(linspace(0, N_T − 1, N_S))`.

    Args:
        teacher_size: `N_T`.
        student_size: `N_S ≤ N_T`.
        name: what the axis is, for error messages.

    Returns:
        An int64 array of shape `(N_S,)`.

    Example:
    >>> uniform_indices(8, 4).tolist()
    [0, 2, 4, 6]
    """
    _check_sizes(teacher_size, student_size, name)
    if teacher_size % student_size == 0:
        return np.arange(student_size, dtype=np.int64) * (teacher_size // student_size)
    return np.round(np.linspace(0, teacher_size - 1, student_size)).astype(np.int64)


def gqa_head_indices(teacher_heads, teacher_kv_heads, student_heads, student_kv_heads):
    """Selects key/value groups, then query heads inside the kept groups.

    KerasHub's grouped-query attention lets query head `i` read key/value head
    `i // (h / g)`. Selecting groups first keeps that pairing: every student
    query head reads the key/value head it was trained with.

    Args:
        teacher_heads: `h_T`.
        teacher_kv_heads: `g_T` (divides `h_T`).
        student_heads: `h_S`.
        student_kv_heads: `g_S` (divides `h_S`; `h_S/g_S ≤ h_T/g_T`).

    Returns:
        `(query_indices, kv_indices)`, int64 arrays of shapes `(h_S,)` and
        `(g_S,)`.
    """
    teacher_heads, teacher_kv_heads, student_heads, student_kv_heads = (
        _checks.integer(value, name)
        for value, name in (
            (teacher_heads, "teacher_heads"),
            (teacher_kv_heads, "teacher_kv_heads"),
            (student_heads, "student_heads"),
            (student_kv_heads, "student_kv_heads"),
        )
    )
    for heads, kv, who in (
        (teacher_heads, teacher_kv_heads, "teacher"),
        (student_heads, student_kv_heads, "student"),
    ):
        if kv < 1 or heads % kv:
            raise ValueError(
                f"The {who}'s {heads} query heads must be a multiple of its "
                f"{kv} key/value heads. Received: num_query_heads={heads}, "
                f"num_key_value_heads={kv}"
            )
    kv_indices = uniform_indices(teacher_kv_heads, student_kv_heads, "key/value heads")
    teacher_group = teacher_heads // teacher_kv_heads
    student_group = student_heads // student_kv_heads
    if student_group > teacher_group:
        raise ValueError(
            f"The student has {student_group} query heads per key/value head, "
            f"the teacher {teacher_group}; a kept group cannot gain heads. Use "
            f"at most {teacher_group * student_kv_heads} query heads for "
            f"{student_kv_heads} key/value heads, or more key/value heads."
        )
    offsets = uniform_indices(teacher_group, student_group, "query heads per group")
    query_indices = (kv_indices[:, None] * teacher_group + offsets[None, :]).reshape(-1)
    return query_indices, kv_indices
