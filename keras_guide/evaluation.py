"""A causal language model's scores on text: logits, perplexity.

Float64 on the host, one sequence at a time: for checks and reports, not
for training.
"""

import numpy as np


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

    x = {"token_ids": np.asarray(ids, "int32")[None],
         "padding_mask": np.ones((1, len(ids)), "int32")}
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
            "agree": ops.cast(ops.equal(ops.argmax(log_p, -1), ops.argmax(log_q, -1)),
                              "float32"),
        }
        for name, value in values.items():
            sums[name] += float((np.asarray(ops.convert_to_numpy(value),
                                            np.float64) * w).sum())
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
