"""Host-side checks of what a `Distiller` is given to train or evaluate on.

Why on the host, before Keras sees the data: an id outside the vocabulary
is not an error inside a compiled step (JAX clamps a gather, PyTorch's
`take_along_axis` wraps a negative index, so a wrong class is scored or a
NaN appears), and an error raised inside JAX's traced step leaves Keras
3.15's JAX trainer with every variable emptied. So arrays are checked whole
before `fit` starts, and other data (a `tf.data.Dataset`, a generator, a
`PyDataset`, a `torch` `DataLoader`) batch by batch as it is drawn, on the
host, before the batch reaches the step.

One-time host code: NumPy only.
"""

import itertools
import sys

import keras
import numpy as np

from keras_guide.distillation import offline


def _numpy(value):
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(keras.ops.convert_to_numpy(value))


def _check_ids(value, name, vocabulary_size, what="token ids", integers=True):
    """Ids in `[0, vocabulary_size)`; with `integers`, of an integer dtype
    (a model or a sparse loss truncates a float id to another one)."""
    ids = _numpy(value)
    if ids.size == 0:
        return
    if integers and ids.dtype.kind not in "iub":
        raise ValueError(
            f"`{name}` must hold integer {what}, but its dtype is {ids.dtype}: a "
            "float id is truncated (2.7 becomes 2) without a word. Pass integers "
            f"(e.g. astype('int32')). Received: {name} of shape {ids.shape}"
        )
    if not np.issubdtype(ids.dtype, np.integer):
        if np.issubdtype(ids.dtype, np.floating) and not np.all(np.isfinite(ids)):
            raise ValueError(
                f"`{name}` holds NaN or Inf. Received: {name} of shape {ids.shape}"
            )
        if not np.issubdtype(ids.dtype, np.floating) or np.any(ids != np.round(ids)):
            return
    low, high = ids.min(), ids.max()
    if low < 0 or (vocabulary_size is not None and high >= vocabulary_size):
        bad = int(np.count_nonzero((ids < 0) | (ids >= (vocabulary_size or np.inf))))
        hint = {
            "token ids": "the models' vocabulary; tokenize with the "
            "teacher's tokenizer",
            "segment ids": "the models' segments",
        }.get(what, "the width of the models' outputs")
        raise ValueError(
            f"`{name}` must hold {what} in [0, {vocabulary_size}) ({hint}), but "
            f"{bad} of its {ids.size} values are outside it (min {low}, max "
            f"{high}). Received: {name} of shape {ids.shape}"
        )


# Weights the float32 loss can sum and divide by: a positive weight below
# float32's smallest normal number flushes to zero on some backends (a 0/0
# loss), and weights near float32's largest overflow when summed.
_SMALLEST_WEIGHT = float(np.finfo(np.float32).tiny)
_LARGEST_WEIGHT = 1e30


def _check_weights(value):
    weights = _numpy(value).astype(np.float64, copy=False)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        bad = int(np.count_nonzero(~np.isfinite(weights) | (weights < 0)))
        raise ValueError(
            "`sample_weight` must be finite and ≥ 0 (one weight per token, "
            f"usually the padding mask), but {bad} of its {weights.size} values "
            f"are NaN, Inf or negative. Received: sample_weight of shape "
            f"{weights.shape}"
        )
    positive = weights[weights > 0]
    if positive.size and (
        positive.min() < _SMALLEST_WEIGHT or positive.max() > _LARGEST_WEIGHT
    ):
        raise ValueError(
            "`sample_weight` must lie in {0} ∪ "
            f"[{_SMALLEST_WEIGHT:.3g}, {_LARGEST_WEIGHT:.0e}]: float32 sums of "
            "weights outside it underflow to 0/0 or overflow to inf. Received "
            f"min positive {positive.min():.3g}, max {positive.max():.3g}; scale "
            "the weights to about 1."
        )


def _check_mask(value):
    mask = _numpy(value)
    if mask.size and mask.dtype != bool and not np.all((mask == 0) | (mask == 1)):
        raise ValueError(
            "`padding_mask` must hold 0/1 (or booleans): 1 for a real token, 0 "
            f"for padding. Received values in [{mask.min()}, {mask.max()}]"
        )


def _token_ids(x):
    if isinstance(x, dict):
        return x.get("token_ids")
    if isinstance(x, (list, tuple)) or x is None:
        return None
    return x


def check_batch(
    x,
    y=None,
    sample_weight=None,
    vocabulary_size=None,
    num_classes=None,
    num_segments=None,
    token_model=True,
    logits_rank=None,
):
    """Raises a `ValueError` naming the input when a batch cannot be trained on.

    Checks: token ids (`x`, or `x["token_ids"]`) in `[0, vocabulary_size)`;
    segment ids in `[0, num_segments)`; a padding mask of 0/1; integer labels
    (`y`, or `y["labels"]` and the offline teacher's class ids) in
    `[0, num_classes)` (the logits' width: the vocabulary for a language
    model, the classes for a classifier; `vocabulary_size` when not given);
    the offline teacher's logits finite; the sample weights finite,
    non-negative and within what float32 sums hold. Ids and sparse labels
    must be integers (token ids in a plain array `x` only for a
    `token_model`; labels of the logits' rank are a distribution, any float).
    """
    num_classes = vocabulary_size if num_classes is None else num_classes
    ids = _token_ids(x)
    if ids is not None:
        _check_ids(
            ids,
            "token_ids" if isinstance(x, dict) else "x",
            vocabulary_size,
            integers=isinstance(x, dict) or token_model,
        )
    if isinstance(x, dict):
        if x.get("segment_ids") is not None:
            _check_ids(x["segment_ids"], "segment_ids", num_segments, "segment ids")
        if x.get("padding_mask") is not None:
            _check_mask(x["padding_mask"])
    if isinstance(y, dict):
        if y.get(offline.LABELS) is not None:
            _check_ids(y[offline.LABELS], "y['labels']", num_classes, "labels")
        if offline.TOP_K_INDICES in y:
            _check_ids(
                y[offline.TOP_K_INDICES],
                f"y[{offline.TOP_K_INDICES!r}]",
                num_classes,
                "class ids",
            )
        if offline.TOP_K_LOGITS in y and not np.all(
            np.isfinite(_numpy(y[offline.TOP_K_LOGITS]))
        ):
            raise ValueError(
                f"`y[{offline.TOP_K_LOGITS!r}]` holds NaN or Inf: "
                "recompute the offline teacher's top-k logits."
            )
    elif y is not None and not isinstance(y, (list, tuple)):
        labels = _numpy(y)
        dense = (
            labels.ndim == logits_rank
            if logits_rank is not None
            else (labels.ndim >= 1 and labels.shape[-1] == num_classes)
        )
        if np.issubdtype(labels.dtype, np.integer) or not dense:
            _check_ids(labels, "y", num_classes, "labels")
        elif np.issubdtype(labels.dtype, np.floating) and not np.all(
            np.isfinite(labels)
        ):
            raise ValueError(
                f"`y` holds NaN or Inf. Received: y of shape {labels.shape}"
            )
    if sample_weight is not None:
        _check_weights(sample_weight)


def _unpack(batch):
    """`(x, y, sample_weight)` as Keras unpacks a batch (a list is a tuple)."""
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3:
        return tuple(batch) + (None,) * (3 - len(batch))
    return batch, None, None


def _is_array(value):
    return (
        value is None
        or isinstance(value, (np.ndarray, list, dict, tuple))
        or (keras.ops.is_tensor(value))
    )


class _CheckedPyDataset(keras.utils.PyDataset):
    """A `PyDataset` (or a sized re-iterable, read in order) checked batch by batch."""

    def __init__(self, data, check):
        super().__init__()
        self._data, self._check = data, check
        self._iterator = None

    def __len__(self):
        return len(self._data)

    @property
    def num_batches(self):
        return len(self._data)

    def __getitem__(self, index):
        if isinstance(self._data, keras.utils.PyDataset):
            batch = self._data[index]
        else:
            if index == 0 or self._iterator is None:
                self._iterator = iter(self._data)
            batch = next(self._iterator)
        self._check(*_unpack(batch))
        return batch

    def on_epoch_end(self):
        if isinstance(self._data, keras.utils.PyDataset):
            self._data.on_epoch_end()


def _checked_generator(data, check):
    for batch in data:
        check(*_unpack(batch))
        yield batch


def _checked_tf_dataset(dataset, check):
    import tensorflow as tf

    def host_check(*flat):
        element = tf.nest.pack_sequence_as(structure, list(flat))
        check(*_unpack(element))
        return np.bool_(True)

    def map_fn(*element):
        element = element[0] if len(element) == 1 else element
        flat = tf.nest.flatten(element)
        ok = tf.numpy_function(host_check, flat, tf.bool, stateful=True)
        with tf.control_dependencies([ok]):
            return tf.nest.map_structure(tf.identity, element)

    structure = dataset.element_spec
    return dataset.map(map_fn)


class Recorder:
    """Wraps a check and keeps the error it raised: TensorFlow's input
    pipeline re-raises an error from inside it as an `InvalidArgumentError`,
    which `reraise` turns back into the check's own `ValueError`."""

    def __init__(self, check):
        self._check, self.error = check, None

    def __call__(self, *args):
        try:
            self._check(*args)
        except ValueError as error:
            self.error = error
            raise

    def reraise(self, error):
        if self.error is not None and self.error is not error:
            raise self.error from None


def first_batch(x, y=None, sample_weight=None, batch_size=None):
    """The first batch `fit` draws from its data, and the data to train on.

    Arrays give their first `batch_size` rows (Keras' default, 32, when
    `None`); a `tf.data.Dataset`, a `PyDataset` or a sized re-iterable (a
    `DataLoader`) give their first element without consuming anything; a
    generator gives its first element and is returned re-chained with it.

    Returns:
        `((x, y, sample_weight) or None, x)`.
    """
    if _is_array(x) and _is_array(y) and _is_array(sample_weight):
        if isinstance(x, tuple):
            return None, x
        rows = 32 if batch_size is None else int(batch_size)
        return keras.tree.map_structure(
            lambda a: None if a is None else _numpy(a)[:rows], (x, y, sample_weight)
        ), x
    if isinstance(x, keras.utils.PyDataset):
        return _unpack(x[0]), x
    if hasattr(x, "__next__"):
        try:
            first = next(x)
        except StopIteration:
            return None, iter(())
        return _unpack(first), itertools.chain([first], x)
    if hasattr(x, "__iter__"):
        for first in x:
            return _unpack(keras.tree.map_structure(_numpy, first)), x
    return None, x


def checked(x, y, sample_weight, check):
    """Checks array data now; returns `x` wrapped so every batch of other data
    is checked when drawn (`check(x, y, sample_weight)` raises)."""
    if _is_array(x) and _is_array(y) and _is_array(sample_weight):
        if not isinstance(x, tuple):
            check(x, y, sample_weight)
        return x
    if "tensorflow" in sys.modules and isinstance(
        x, sys.modules["tensorflow"].data.Dataset
    ):
        return _checked_tf_dataset(x, check)
    if isinstance(x, keras.utils.PyDataset) or (
        hasattr(x, "__len__") and hasattr(x, "__iter__") and not hasattr(x, "__next__")
    ):
        return _CheckedPyDataset(x, check)
    if hasattr(x, "__next__") or hasattr(x, "__iter__"):
        return _checked_generator(x, check)
    return x
