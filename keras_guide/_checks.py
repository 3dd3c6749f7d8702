"""Argument checks shared by the public functions below `guide()`.

Each returns the checked value in the form the caller computes with, or raises
a `ValueError` that says which argument, what was received and what to pass
instead. Host-side NumPy only.
"""

import numbers

import numpy as np

from keras_guide import _host


def integer(value, name, minimum=1, where=""):
    """`value` as an `int` ≥ `minimum`; booleans and floats are refused."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (numbers.Integral, np.integer))
        or value < minimum
    ):
        place = f" for {where}" if where else ""
        raise ValueError(
            f"`{name}`{place} must be an integer ≥ {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def scalar(value, name, positive=False, where=""):
    """`value` as a finite real `float` (and > 0 where `positive`)."""
    place = f" for {where}" if where else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.floating, np.integer)
    ):
        raise ValueError(
            f"`{name}`{place} must be a real number. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    value = float(value)
    if not np.isfinite(value) or (positive and value <= 0):
        need = "finite and > 0" if positive else "finite"
        raise ValueError(f"`{name}`{place} must be {need}. Received: {name}={value!r}")
    return value


def real_array(value, name, ndim=None, finite=True, role="Argument"):
    """`value` as a host array of real numbers (no complex, string or object
    entries), of rank `ndim` where given, and finite where `finite`."""
    array = _host.to_numpy(value)
    real_dtype(array, name, role=role)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(
            f"{role} `{name}` must be {ndim}-D; received shape {array.shape}."
        )
    if finite:
        _host.check_finite(array, name, role=role)
    return array


def array_like(value, name, role="Argument"):
    """A nested list or tuple of numbers as a NumPy array; arrays, tensors
    and variables are returned as they are (read later, where needed)."""
    if not isinstance(value, (list, tuple)):
        return value
    try:
        return np.asarray(value)
    except ValueError:
        raise ValueError(
            f"{role} `{name}` given as a list must be rectangular (every row "
            "of the same length). Pass a NumPy array."
        ) from None


def real_dtype(value, name, role="Teacher weight"):
    """Refuses a complex, string or object array (or variable) without
    reading its values."""
    try:
        dtype = (
            _host.dtype_name(value)
            if hasattr(value, "dtype")
            else (np.asarray(value).dtype.name)
        )
    except (TypeError, ValueError):
        dtype = str(getattr(value, "dtype", type(value).__name__))
    if dtype != "bool" and not dtype.startswith(("float", "int", "uint", "bfloat")):
        raise ValueError(
            f"{role} `{name}` must hold real numbers; received dtype {dtype} "
            f"(shape {tuple(getattr(value, 'shape', np.shape(value)))}). "
            + (
                "Take the real part or the magnitude first."
                if "complex" in dtype
                else "Pass a numeric array."
            )
        )


def indices(value, name, where=""):
    """`value` as a 1-D int64 array; floats that are not whole numbers,
    booleans and other types are refused (a cast would truncate them)."""
    array = np.asarray(_host.to_numpy(value))
    place = f" for {where}" if where else ""
    whole = array.dtype.kind in "iu" or (
        array.dtype.kind == "f"
        and np.all(np.isfinite(array))
        and np.all(array == np.round(array))
    )
    if array.ndim != 1 or not whole or array.dtype.kind == "b":
        raise ValueError(
            f"`{name}`{place} must be a 1-D list of integer indices. Received: "
            f"{name} of shape {array.shape} and dtype {array.dtype}"
            + (f": {array.tolist()}" if array.size <= 16 else "")
        )
    return array.astype(np.int64)
