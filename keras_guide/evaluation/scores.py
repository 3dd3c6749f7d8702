"""How the project scores a language model on text: held-out cross-entropy
(every table's number), logits, perplexity, and a student against its teacher.

Float64 on the host: for evaluation and reports, not for training.
"""

import keras
import numpy as np

from keras_guide._predict import predictor
from keras_guide.distillation.losses import sparse_cross_entropy


def _batches(data, batch_size):
    """Yields `(x, y, sample_weight)` from arrays or from an iterable of batches."""
    if isinstance(data, tuple):
        if len(data) not in (2, 3):
            raise ValueError(
                "`validation_data` must be (x, y) or (x, y, sample_weight), or "
                f"an iterable of such batches. Received: a tuple of {len(data)}"
            )
        x, y = data[0], data[1]
        weight = data[2] if len(data) == 3 else None
        rows = int(np.shape(keras.tree.flatten(x)[0])[0])
        for start in range(0, rows, batch_size):
            take = lambda a: a[start : start + batch_size]  # noqa: E731
            yield (
                keras.tree.map_structure(take, x),
                take(y),
                None if weight is None else take(weight),
            )
        return
    for batch in data:
        batch = tuple(batch)
        yield batch[0], batch[1], batch[2] if len(batch) > 2 else None


def heldout_cross_entropy(model, data, batch_size=32):
    """Mean token cross-entropy of `model`'s logits on `data` (docs/method.md §7).

    `L = Σ_t w_t · (−log softmax(z_t)[y_t]) / Σ_t w_t` over the whole data
    set (not a mean of batch means), accumulated in float64 on the host.

    Args:
        model: a model mapping `x` to logits; a KerasHub task model is fed
            its token ids as they are (its preprocessor, which takes raw
            text, is skipped).
        data: `(x, y)` or `(x, y, sample_weight)` arrays, or an iterable of
            such batches (a `tf.data.Dataset` qualifies).
        batch_size: rows per call when `data` holds arrays.

    Returns:
        A Python float.

    Raises:
        ValueError: if `data` is malformed or keeps no token.
    """
    total, count = 0.0, 0.0
    predict = predictor(model)
    for x, y, weight in _batches(data, batch_size):
        logits = predict(x)
        values = np.asarray(
            keras.ops.convert_to_numpy(sparse_cross_entropy(y, logits)), np.float64
        )
        if weight is None:
            weight = np.ones_like(values)
        weight = np.asarray(weight, np.float64)
        weight = weight.reshape(weight.shape + (1,) * (values.ndim - weight.ndim))
        weight = np.broadcast_to(weight, values.shape)
        total += float(np.sum(values * weight))
        count += float(np.sum(weight))
    if count == 0:
        raise ValueError(
            "`validation_data` keeps no token (all sample weights are zero or "
            "it is empty). Received: total weight 0"
        )
    return total / count


def token_ids(lm, text):
    """`text` in `lm`'s tokens, opening with its start token if it adds one."""
    import keras

    ids = keras.ops.convert_to_numpy(lm.preprocessor.tokenizer(text)).tolist()
    if lm.preprocessor.add_start_token:
        ids = [lm.preprocessor.tokenizer.start_token_id] + ids
    return np.asarray(ids, "int32")


def logits(lm, ids):
    """`lm`'s float64 logits for one sequence of token ids, `(len, V)`."""
    import keras

    x = {
        "token_ids": np.asarray(ids, "int32")[None],
        "padding_mask": np.ones((1, len(ids)), "int32"),
    }
    return keras.ops.convert_to_numpy(lm(x)).astype(np.float64)[0]


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def perplexity(lm, text):
    """`exp` of `lm`'s mean next-token cross-entropy on `text` (float64)."""
    ids = token_ids(lm, text)
    log_probs = log_softmax(logits(lm, ids)[:-1])
    return float(np.exp(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean()))


def compare(teacher, student, batches):
    """Teacher and student on the same held-out batches.

    The per-token quantities are computed where the models run (float32);
    only their sums come back to the host (float64).

    Args:
        teacher, student: causal LMs over one vocabulary.
        batches: `(x, y, sample_weight)` batches (`text.eval_batches`).

    Returns:
        dict: `teacher_loss`, `student_loss` (mean next-token cross-entropy,
        nats), `teacher_perplexity`, `student_perplexity`, `kl` (mean
        `KL(teacher ‖ student)` per token, nats), `top1_agreement` (share of
        tokens where both rank the same token first), `tokens`.
    """
    import keras
    from keras import ops

    def per_token(model, x):
        z = keras.Model.predict_on_batch(model, x)
        return ops.log_softmax(ops.cast(z, "float32"), axis=-1)

    sums = dict(teacher=0.0, student=0.0, kl=0.0, agree=0.0, tokens=0.0)
    for x, y, weight in batches:
        w = np.asarray(weight, np.float64)
        log_p, log_q = per_token(teacher, x), per_token(student, x)
        target = ops.expand_dims(ops.convert_to_tensor(np.asarray(y, "int32")), -1)
        values = {
            "teacher": -ops.take_along_axis(log_p, target, -1)[..., 0],
            "student": -ops.take_along_axis(log_q, target, -1)[..., 0],
            "kl": ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1),
            "agree": ops.cast(
                ops.equal(ops.argmax(log_p, -1), ops.argmax(log_q, -1)), "float32"
            ),
        }
        for name, value in values.items():
            sums[name] += float(
                (np.asarray(ops.convert_to_numpy(value), np.float64) * w).sum()
            )
        sums["tokens"] += float(w.sum())
    n = sums["tokens"]
    if not n:
        raise ValueError("The held-out batches hold no token to compare on.")
    teacher_loss, student_loss = sums["teacher"] / n, sums["student"] / n
    return {
        "teacher_loss": teacher_loss,
        "student_loss": student_loss,
        "teacher_perplexity": float(np.exp(teacher_loss)),
        "student_perplexity": float(np.exp(student_loss)),
        "kl": sums["kl"] / n,
        "top1_agreement": sums["agree"] / n,
        "tokens": int(n),
    }
