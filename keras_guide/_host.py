"""Host-side array helpers shared by the one-time GUIDE math (NumPy only).

Reading a sharded JAX array with `np.asarray` assembles the whole array on the
host and caches that copy on the array for as long as it lives; `row_chunks`
reads a table one block of rows at a time instead, so the PCA of a sharded
embedding table never holds a full copy and leaves none behind.
"""

import numpy as np


def to_numpy(value):
    """Returns a read-only host view or copy of an array or Keras variable.

    Callers never write into the result, so a NumPy input is not copied.
    """
    if isinstance(value, (np.ndarray, np.generic, list, tuple, float, int)):
        return np.asarray(value)
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def dtype_name(value):
    """The standard name (`"float32"`, ...) of an array's or variable's dtype."""
    import keras

    return keras.backend.standardize_dtype(value.dtype)


def check_finite(array, name, shape=None, bad=None, role="Teacher weight"):
    """Raises a `ValueError` naming `name` if `array` holds NaN or Inf.

    `shape` and `bad` override what the message reports, for a table checked
    block by block; `role` says what `name` is (a teacher weight unless told).
    """
    array = np.asarray(array)
    if bad is None:
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        shape = shape or array.shape
        if role == "Teacher weight":
            advice = (
                "GUIDE cannot project a diverged teacher. Load a healthy "
                "checkpoint or clean the weight first."
            )
        else:
            advice = "pass finite values."
        raise ValueError(
            f"{role} `{name}` of shape {shape} holds {bad} NaN or Inf values; "
            f"{advice} Received: {name} with {bad} non-finite values"
        )


def _jax_value(value):
    value = getattr(value, "value", value)
    try:
        import jax
    except ImportError:
        return None
    return value if isinstance(value, jax.Array) else None


def row_chunks(value, chunk_rows=4096):
    """Yields host NumPy blocks of at most `chunk_rows` rows of a 2-D array.

    One-time host math (NumPy); for a JAX array or a Keras variable holding
    one, each block is sliced on the devices (one compiled slice per block
    size) and fetched alone, so the host never holds more than one block and
    no host copy stays cached on `value`. Other inputs are read through
    `keras.ops.convert_to_numpy`, blocks being views.

    Args:
        value: a `(rows, width)` array or Keras variable (e.g. a sharded
            embedding table).
        chunk_rows: rows per block, a positive integer.

    Returns:
        A generator of read-only `(≤ chunk_rows, width)` NumPy arrays, in
        row order.

    Raises:
        ValueError: `value` is not 2-D or `chunk_rows` is not positive.

    Example:
    >>> gram = sum(c.T @ c for c in row_chunks(table_variable, 1024))
    """
    shape = tuple(value.shape)
    if len(shape) != 2:
        raise ValueError(
            f"`value` must be a 2-D table of shape (rows, width). Received: "
            f"shape {shape}"
        )
    if (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, int)
        or (chunk_rows < 1)
    ):
        raise ValueError(
            "`chunk_rows` must be a positive integer. Received: "
            f"chunk_rows={chunk_rows!r}"
        )
    if isinstance(value, np.ndarray):
        for start in range(0, shape[0], chunk_rows):
            yield value[start : start + chunk_rows]
        return
    array = _jax_value(value)
    if array is None:
        import keras

        host = np.asarray(keras.ops.convert_to_numpy(getattr(value, "value", value)))
        for start in range(0, shape[0], chunk_rows):
            yield host[start : start + chunk_rows]
        return
    import jax

    take = jax.jit(
        lambda table, start, size: jax.lax.dynamic_slice_in_dim(
            table, start, size, axis=0
        ),
        static_argnums=2,
    )
    for start in range(0, shape[0], chunk_rows):
        size = min(chunk_rows, shape[0] - start)
        yield np.asarray(take(array, start, size))
