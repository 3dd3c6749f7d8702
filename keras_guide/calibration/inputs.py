"""Calibration text as teacher input batches, checked before the teacher runs."""

import numpy as np

# Inputs a batch may leave out, and what a plain array of token ids stands for.
_DEFAULTS = {"padding_mask": np.ones_like, "segment_ids": np.zeros_like}


def _as_inputs(item, input_names):
    """One element of the calibration data as an input dict of NumPy arrays."""
    if isinstance(item, (tuple, list)) and item and not np.isscalar(item[0]):
        item = item[0]  # `(x, y)` or `(x, y, sample_weight)`: keep `x`.
    if isinstance(item, dict):
        if "token_ids" not in item:
            raise ValueError(
                "A calibration batch given as a dict needs `token_ids` (and "
                f"optionally {sorted(_DEFAULTS)}). Received keys: {sorted(item)}"
            )
        x = {k: np.asarray(v) for k, v in item.items()}
    else:
        x = {"token_ids": np.asarray(item)}
    ids = x["token_ids"]
    if ids.ndim == 1:
        x = {k: v[None] for k, v in x.items()}
    for name in input_names:
        if name not in x:
            if name not in _DEFAULTS:
                raise ValueError(
                    f"The teacher takes `{name}`, which the calibration batch "
                    f"does not give. Received keys: {sorted(x)}"
                )
            x[name] = _DEFAULTS[name](x["token_ids"])
    return {name: x[name] for name in input_names}


def _check(x, vocabulary_size, index, max_length=None, num_segments=None):
    ids = x["token_ids"]
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"Calibration batch {index}: `token_ids` must be integer token ids "
            f"of shape (batch, length). Received: dtype {ids.dtype}, shape "
            f"{ids.shape}"
        )
    for name, value in x.items():
        if value.shape != ids.shape:
            raise ValueError(
                f"Calibration batch {index}: `{name}` has shape {value.shape}, "
                f"`token_ids` {ids.shape}; they must match."
            )
    mask = np.asarray(x["padding_mask"])
    if mask.dtype != bool and not np.all((mask == 0) | (mask == 1)):
        raise ValueError(
            f"Calibration batch {index}: `padding_mask` must hold 0/1 (1 for a "
            f"real token). Received values in [{mask.min()}, {mask.max()}]"
        )
    if max_length is not None and ids.shape[1] > max_length:
        raise ValueError(
            f"Calibration batch {index} has sequences of {ids.shape[1]} tokens; "
            f"the teacher takes at most {max_length}. Cut the calibration text "
            f"into windows of at most {max_length}."
        )
    real = mask.astype(bool)
    bad = (ids < 0) | (ids >= vocabulary_size)
    if np.any(bad & real):
        raise ValueError(
            f"Calibration batch {index} holds token ids outside the teacher's "
            f"vocabulary [0, {vocabulary_size}): e.g. {int(ids[bad & real][0])}. "
            "Tokenize the calibration text with the teacher's tokenizer."
        )
    segments = x.get("segment_ids")
    if segments is not None:
        if not np.issubdtype(segments.dtype, np.integer):
            raise ValueError(
                f"Calibration batch {index}: `segment_ids` must be integers. "
                f"Received: dtype {segments.dtype}"
            )
        high = num_segments if num_segments is not None else np.inf
        wrong = (segments < 0) | (segments >= high)
        if np.any(wrong):
            bound = f"[0, {num_segments})" if num_segments is not None else "≥ 0"
            raise ValueError(
                f"Calibration batch {index}: `segment_ids` must lie in {bound} "
                f"(the teacher's segments), but {int(wrong.sum())} of its "
                f"{segments.size} values do not (min {int(segments.min())}, max "
                f"{int(segments.max())}); -1 would wrap to the last segment."
            )


def calibration_batches(
    calibration,
    input_names,
    vocabulary_size,
    batch_size=8,
    max_length=None,
    num_segments=None,
):
    """Checks calibration data and returns it as a list of input dicts.

    Args:
        calibration: token ids `(num_sequences, length)` (one array, or a list
            of them), one input dict, or an iterable of batches: arrays of
            token ids, input dicts (`token_ids`, optionally `padding_mask`,
            `segment_ids`), or
            `(x, y[, sample_weight])` tuples whose `x` is one of those (a
            `tf.data.Dataset` of such elements works). Plain arrays have no
            padding.
        input_names: the teacher's input names.
        vocabulary_size: every real token id must be below it.
        batch_size: rows per batch: one array is cut into batches of it,
            and so is any larger batch in a list (the teacher runs one batch
            at a time, so its activations stay one batch's size).
        max_length: the teacher's longest sequence (its position table),
            or `None`.
        num_segments: the teacher's segments (`segment_ids` lie in
            `[0, num_segments)`), or `None` (then only negatives are refused).

    Returns:
        A list of input dicts with int32 arrays, every input the teacher needs.

    Raises:
        ValueError: no tokens, ids of real tokens outside the vocabulary
            (padding may hold any id), segment ids outside the segments, a padding mask
            that is not 0/1, sequences longer than the teacher takes, data
            that is not one of the forms above, or a batch in a layout the
            teacher cannot take (the message names the batch).
    """
    batches = []
    for index, item in enumerate(_raw_batches(calibration, batch_size)):
        if hasattr(item, "numpy") and not isinstance(item, dict):
            item = item.numpy()
        x = _as_inputs(item, input_names)
        _check(x, vocabulary_size, index, max_length, num_segments)
        batches += _int32_batches(x, vocabulary_size, batch_size)
    if (
        not batches
        or sum(int(b["padding_mask"].astype(bool).sum()) for b in batches) == 0
    ):
        raise ValueError(
            "The calibration data holds no tokens. Pass token ids of shape "
            "(num_sequences, length) from text the teacher's tokenizer encoded."
        )
    return batches


def _raw_batches(calibration, batch_size):
    """The calibration data as an iterable of batches, each still in any of
    `calibration_batches`' forms: one array is cut into batches of
    `batch_size` rows."""
    if isinstance(calibration, dict):
        calibration = [calibration]  # one batch of inputs
    if (
        isinstance(calibration, (list, tuple))
        and calibration
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            for v in calibration
        )
    ):
        calibration = np.asarray(calibration)  # one sequence of token ids
    if (
        isinstance(calibration, np.ndarray)
        and calibration.ndim == 0
        or (
            isinstance(calibration, (str, bytes))
            or not (
                isinstance(calibration, np.ndarray) or hasattr(calibration, "__iter__")
            )
        )
    ):
        raise ValueError(
            "`calibration` must be token ids of shape (num_sequences, length), a "
            "list of such arrays, or an iterable of batches (input dicts or "
            f"(x, y) tuples). Received: calibration={calibration!r} of type "
            f"{type(calibration).__name__}"
        )
    if isinstance(calibration, np.ndarray):
        rows = calibration if calibration.ndim == 2 else calibration[None]
        calibration = [
            rows[i : i + batch_size] for i in range(0, len(rows), batch_size)
        ]
    return calibration


def _int32_batches(x, vocabulary_size, batch_size):
    """One checked input dict as int32 batches of at most `batch_size` rows."""
    rows = len(x["token_ids"])
    # Padding may hold any id; the teacher still looks it up (an index
    # error on some backends), so an id outside the vocabulary is
    # replaced by 0 there, in the copies: masked, it changes nothing.
    outside = (x["token_ids"] < 0) | (x["token_ids"] >= vocabulary_size)
    if np.any(outside):
        x = {**x, "token_ids": np.where(outside, 0, x["token_ids"])}
    return [
        {k: v[start : start + batch_size].astype("int32") for k, v in x.items()}
        for start in range(0, rows, batch_size)
    ]
