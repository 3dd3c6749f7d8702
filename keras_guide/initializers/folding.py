"""Folding the GUIDE projection `M` into teacher weights (docs/method.md §2).

A student vector `x_S` stands for the teacher vector `x_S Mᵀ`. Kernels that read
the residual stream become `Mᵀ W_T` on their `d` axis, kernels and biases that
write it become `W_T M`: both contract the `d` axis with `M`'s first axis, which
is what `project_axis` does. Norm gains are folded into the kernel that reads the
norm's output (`fold_gain`, `fold_shift`, `norm_scale`).

Host-side NumPy in float64; the `d` axis is always named by the caller.

Reference: arXiv 2510.06502.
"""

import numpy as np

from keras_guide import _checks


def _axis(weight, axis, name):
    _checks.real_dtype(weight, name)
    ndim = np.ndim(weight)
    if (
        isinstance(axis, (bool, np.bool_))
        or not isinstance(axis, (int, np.integer))
        or not -ndim <= axis < ndim
    ):
        raise ValueError(
            f"Axis {axis} is out of range for `{name}` of shape "
            f"{np.shape(weight)} (rank {ndim}). Received: axis={axis}"
        )
    return axis % ndim


def project_axis(weight, matrix, axis, name="weight"):
    """Contracts `weight`'s axis `axis` (size `d_T`) with `matrix` (`d_T × d_S`).

    `W_S[..., j, ...] = Σ_i W_T[..., i, ...] M[i, j]`: `Mᵀ W_T` for a reading
    kernel whose `d` axis is 0, `W_T M` for a writing kernel or bias.

    Returns:
        float64 array, `axis` now of size `d_S`.
    """
    axis = _axis(weight, axis, name)
    matrix = np.asarray(
        _checks.real_array(
            matrix, f"projection for `{name}`", ndim=2, role="The projection"
        ),
        dtype=np.float64,
    )
    if np.shape(weight)[axis] != matrix.shape[0]:
        raise ValueError(
            f"`{name}` of shape {np.shape(weight)} has {np.shape(weight)[axis]} "
            f"entries on axis {axis}, but the projection maps {matrix.shape[0]} "
            f"teacher dimensions (matrix shape {matrix.shape}). Name the axis "
            "that reads or writes the residual stream."
        )
    out = np.tensordot(np.asarray(weight, dtype=np.float64), matrix, axes=([axis], [0]))
    return np.moveaxis(out, -1, axis)


def select_axis(weight, indices, axis, name="weight"):
    """Keeps `indices` (heads, neurons, positions) of `weight`'s axis `axis`."""
    axis = _axis(weight, axis, name)
    indices = _checks.indices(indices, "indices", where=f"axis {axis} of `{name}`")
    size = np.shape(weight)[axis]
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        raise ValueError(
            f"Selected indices for axis {axis} of `{name}` (shape "
            f"{np.shape(weight)}) must be a 1-D list in [0, {size}). Received: "
            f"indices={indices.tolist()}"
        )
    return np.take(np.asarray(weight, dtype=np.float64), indices, axis=axis)


def fold_gain(weight, gain, axis, name="weight"):
    """Returns `diag(γ) W` on axis `axis`: a norm's gain moved into its reader."""
    axis = _axis(weight, axis, name)
    gain = np.asarray(_checks.real_array(gain, f"norm gain for `{name}`"), np.float64)
    if gain.shape != (np.shape(weight)[axis],):
        raise ValueError(
            f"The norm gain of shape {gain.shape} does not match axis {axis} of "
            f"`{name}` (shape {np.shape(weight)}). Fold a gain into the kernel "
            "that reads that norm's output."
        )
    shape = [1] * np.ndim(weight)
    shape[axis] = -1
    return np.asarray(weight, dtype=np.float64) * gain.reshape(shape)


def fold_shift(weight, shift, axis, bias=None, name="weight"):
    """Returns `b + β W`: a norm's shift `β` carried into its reader's bias.

    The result has `weight`'s shape without axis `axis` (the bias shape).
    """
    axis = _axis(weight, axis, name)
    shift = np.asarray(
        _checks.real_array(shift, f"norm shift for `{name}`"), np.float64
    )
    if shift.shape != (np.shape(weight)[axis],):
        raise ValueError(
            f"The norm shift of shape {shift.shape} does not match axis {axis} "
            f"of `{name}` (shape {np.shape(weight)})."
        )
    out = np.tensordot(shift, np.asarray(weight, dtype=np.float64), axes=([0], [axis]))
    if bias is None:
        return out
    bias = np.asarray(_checks.real_array(bias, f"bias of `{name}`"), np.float64)
    if bias.shape != out.shape:
        raise ValueError(
            f"The bias of `{name}` has shape {bias.shape}, expected {out.shape} "
            f"(kernel shape {np.shape(weight)} without axis {axis})."
        )
    return bias + out


def norm_scale(teacher_dim, student_dim):
    """`√(d_T/d_S)`: RMS/LayerNorm of `x_S Mᵀ` equals this times the student's."""
    teacher_dim = _checks.integer(teacher_dim, "teacher_dim")
    student_dim = _checks.integer(student_dim, "student_dim")
    return float(np.sqrt(teacher_dim / student_dim))


def diagonal_gain(gain, matrix):
    """`diag(Mᵀ diag(γ) M)`: the best elementwise student gain for a teacher gain.

    Used for a final norm that feeds a tied head, which cannot be folded.
    """
    matrix = np.asarray(
        _checks.real_array(matrix, "projection", ndim=2, role="The projection"),
        np.float64,
    )
    gain = np.asarray(
        _checks.real_array(gain, "gain", ndim=1, role="The norm gain"), np.float64
    )
    if gain.shape != matrix.shape[:1]:
        raise ValueError(
            f"The norm gain of shape {gain.shape} does not match the projection's "
            f"teacher width {matrix.shape[0]} (projection shape {matrix.shape})."
        )
    return np.einsum("ij,i,ij->j", matrix, gain, matrix)
