"""llama.cpp's perplexity protocol (`tools/perplexity/perplexity.cpp`), as
host math: the chunks, the scored positions and the statistics that
`llama-perplexity` prints, plus its `--kl-divergence` figures.

The protocol: the text is tokenized whole (the start token first where the
vocabulary adds one), cut into non-overlapping chunks of `n_ctx` tokens (the
tail that does not fill a chunk is dropped), and each chunk is evaluated from
an empty cache with its first token replaced by the start token where the
vocabulary adds one. Only the second half of each chunk is scored: the
logits at positions `n_ctx/2 .. n_ctx − 2` predict the tokens after them, so
every scored token sees at least `n_ctx/2` tokens of context, and a chunk
scores `n_ctx − n_ctx/2 − 1` tokens. The text must hold at least two chunks.

With `nll_i = −log p(token_i)` over the `N` scored tokens,
`PPL = exp(mean nll)` and its uncertainty `PPL · sqrt((mean nll² − mean²) /
(N − 1))`, as the tool prints them. Against a base model with distribution
`p_base`: `KL_i = Σ_v p_base(v) (log p_base(v) − log p(v))` (its mean,
uncertainty and percentiles), `ln(PPL/PPL_base)` with an uncertainty from
the covariance of the two `nll`s, the RMS of `Δp_i = p(token_i) −
p_base(token_i)`, and "same top p", the share of tokens where both models
rank the same token first. llama.cpp stores the base's log-probabilities as
16-bit integers over the top 16 nats and drops terms below `e^−16`; here
everything is float64 from float32 logits, so the two agree to about
`1e−4` nats.

Everything here is float64 NumPy on the host; the logits come from whichever
runtime runs the model (`runners.py`).
"""

import dataclasses

import numpy as np

# Scored rows converted to float64 at a time (bounds host memory for large
# vocabularies: 64 rows of Gemma's 262,144 tokens are 128 MiB).
_ROWS = 64


def first_scored(context):
    """The first position whose logits are scored in a chunk of `context`."""
    return context // 2


def chunks(ids, context, bos_id=None, max_chunks=None):
    """The protocol's chunks of a whole text's token ids.

    Args:
        ids: int array. The text tokenized whole (with the start token first
            where the vocabulary adds one).
        context: int. Tokens per chunk (`llama-perplexity -c`).
        bos_id: int or None. Replaces each chunk's first token (the
            vocabulary adds a start token); `None` leaves chunks as cut.
            Defaults to None.
        max_chunks: int or None. Keep the first `max_chunks` (`--chunks`).
            Defaults to None (every full chunk).

    Returns:
        `(inputs, targets)`: int32 arrays `(chunks, context)`: what the model
        reads (first token replaced) and the text's own tokens (the targets
        of the scored positions).

    Raises:
        ValueError: `context` is below 4, or the text holds fewer than two
            chunks.
    """
    ids = np.asarray(ids, np.int64).reshape(-1)
    if int(context) != context or context < 4:
        raise ValueError(
            f"`context` must be an integer ≥ 4. Received: context={context!r}"
        )
    if len(ids) < 2 * context:
        raise ValueError(
            f"The text has {len(ids)} tokens; llama.cpp's perplexity protocol needs "
            f"at least two chunks, {2 * context} tokens, at a context of {context}. "
            "Pass more text or a smaller context."
        )
    count = len(ids) // context
    if max_chunks is not None:
        count = min(count, int(max_chunks))
    targets = ids[: count * context].reshape(count, context).astype(np.int32)
    inputs = targets.copy()
    if bos_id is not None:
        inputs[:, 0] = bos_id
    return inputs, targets


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@dataclasses.dataclass
class TokenScores:
    """Per-token values over the scored tokens of every chunk seen so far.

    Attributes:
        nll: `−log p(token)` for each scored token.
        kl, same_top, p_diff, nll_base: against a base model (empty without).
    """

    nll: list = dataclasses.field(default_factory=list)
    kl: list = dataclasses.field(default_factory=list)
    same_top: list = dataclasses.field(default_factory=list)
    p_diff: list = dataclasses.field(default_factory=list)
    nll_base: list = dataclasses.field(default_factory=list)

    def add(self, logits, targets, base_logits=None):
        """Scores one chunk's scored rows.

        Args:
            logits: float array `(rows, vocabulary)`: the model's logits at
                the scored positions, each predicting the target at the same
                row.
            targets: int array `(rows,)`: the next tokens.
            base_logits: the base model's logits at the same positions, or
                None. Defaults to None.
        """
        logits = np.asarray(logits)
        targets = np.asarray(targets, np.int64)
        if logits.ndim != 2 or len(logits) != len(targets):
            raise ValueError(
                f"`logits` must be (rows, vocabulary) with one row per target. "
                f"Received: logits of shape {logits.shape}, {len(targets)} targets"
            )
        if base_logits is not None and np.shape(base_logits) != logits.shape:
            raise ValueError(
                "The base model's logits must have the model's shape (one "
                f"vocabulary). Received: {np.shape(base_logits)} and {logits.shape}"
            )
        for start in range(0, len(targets), _ROWS):
            rows = slice(start, start + _ROWS)
            log_q = _log_softmax(logits[rows])
            target = targets[rows]
            picked = log_q[np.arange(len(target)), target]
            self.nll.append(-picked)
            if base_logits is None:
                continue
            log_p = _log_softmax(base_logits[rows])
            picked_base = log_p[np.arange(len(target)), target]
            self.nll_base.append(-picked_base)
            self.kl.append((np.exp(log_p) * (log_p - log_q)).sum(-1))
            self.same_top.append(log_q.argmax(-1) == log_p.argmax(-1))
            self.p_diff.append(np.exp(picked) - np.exp(picked_base))

    def values(self, name):
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


def _mean_and_error(values):
    """The mean and its standard error, `sqrt((mean x² − mean²) / (N − 1))`."""
    values = np.asarray(values, np.float64)
    n = len(values)
    mean = float(values.mean())
    variance = float((values**2).mean() - mean**2)
    error = float(np.sqrt(variance / (n - 1))) if n > 1 and variance > 0 else 0.0
    return mean, error


def perplexity_summary(nll):
    """`llama-perplexity`'s final estimate from the scored tokens' `nll`.

    Returns:
        dict: `perplexity`, `perplexity_error` (its ± as the tool prints it),
        `nll` (mean nats/token), `nll_error`, `tokens`.
    """
    mean, error = _mean_and_error(nll)
    perplexity = float(np.exp(mean))
    return {
        "perplexity": perplexity,
        "perplexity_error": perplexity * error,
        "nll": mean,
        "nll_error": error,
        "tokens": int(len(nll)),
    }


# The KL percentiles `llama-perplexity --kl-divergence` prints.
PERCENTILES = (99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0, 0.1)


def kl_summary(scores):
    """`llama-perplexity --kl-divergence`'s statistics from `TokenScores`
    gathered against a base model.

    Returns:
        dict: `kl` (mean), `kl_error`, `kl_max`, `kl_min`, `kl_percentiles`
        ({"99.9": ..., "50.0": median, ...}, linear interpolation as the tool
        does), `ln_ppl_ratio` and its `ln_ppl_ratio_error`, `ppl_ratio`,
        `base_perplexity`, `correlation` of the two `ln PPL`s, `delta_p_rms`
        and its error, `same_top` and its error, `tokens`.
    """
    nll, base = scores.values("nll"), scores.values("nll_base")
    n = len(nll)
    if not n or len(base) != n:
        raise ValueError("No token was scored against a base model.")
    mean, error = _mean_and_error(nll)
    mean_base, error_base = _mean_and_error(base)
    covariance = (
        float((nll * base).mean() - mean * mean_base) / (n - 1) if n > 1 else 0.0
    )
    ratio_error = float(np.sqrt(max(error**2 + error_base**2 - 2 * covariance, 0.0)))
    kl = scores.values("kl")
    kl_mean, kl_error = _mean_and_error(kl)
    squared = scores.values("p_diff") ** 2
    mse, mse_error = _mean_and_error(squared)
    rms = float(np.sqrt(mse))
    same = float(scores.values("same_top").mean())
    return {
        "kl": kl_mean,
        "kl_error": kl_error,
        "kl_max": float(kl.max()),
        "kl_min": float(kl.min()),
        "kl_percentiles": {
            f"{q:.1f}": float(np.percentile(kl, q)) for q in PERCENTILES
        },
        "ln_ppl_ratio": mean - mean_base,
        "ln_ppl_ratio_error": ratio_error,
        "ppl_ratio": float(np.exp(mean - mean_base)),
        "base_perplexity": float(np.exp(mean_base)),
        "correlation": (
            covariance / (error * error_base) if error and error_base else 0.0
        ),
        "delta_p_rms": rms,
        "delta_p_rms_error": 0.5 / rms * mse_error if rms else 0.0,
        "same_top": same,
        "same_top_error": float(np.sqrt(same * (1 - same) / (n - 1))) if n > 1 else 0.0,
        "tokens": n,
    }
