"""Host-side array helpers shared by the one-time GUIDE math (NumPy only)."""

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


def check_finite(array, name):
    """Raises a `ValueError` naming `name` if `array` holds NaN or Inf."""
    array = np.asarray(array)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"Teacher weight `{name}` of shape {array.shape} holds {bad} NaN or "
            "Inf values; GUIDE cannot project a diverged teacher. Load a "
            "healthy checkpoint or clean the weight first."
        )


