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
