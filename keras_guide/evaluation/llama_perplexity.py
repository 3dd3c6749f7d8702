"""Several models scored on one tokenization with `llama-perplexity`'s
protocol (`protocol.py`), each where it runs (`runners.py`), chunk by chunk:
only one chunk's logits per model are held at a time.
"""

import numpy as np

from keras_guide.evaluation import protocol

# Characters of the text each model must tokenize as the shared tokenization
# did: a model with another vocabulary is refused before any chunk runs.
_PROBE_CHARS = 2000


def shared_tokens(runners, text):
    """`text` tokenized whole by the first runner, checked against the rest.

    Args:
        runners: dict `{name: runner}` (the first one that can tokenize
            defines the tokens; llama.cpp's tokenizer for a `.gguf`).
        text: str.

    Returns:
        `(ids, bos_id)`: int32 token ids, and the start token each chunk
        opens with (None where the vocabulary adds none).

    Raises:
        ValueError: two models have different vocabularies (sizes, or ids on
            the text's first characters) or start tokens.
    """
    names = list(runners)
    reference = names[0]
    ids = runners[reference].tokenize(text)
    probe_text = text[:_PROBE_CHARS]
    probe = None
    for name in names[1:]:
        runner, first = runners[name], runners[reference]
        if runner.vocabulary_size != first.vocabulary_size:
            raise ValueError(
                f"{name} has a vocabulary of {runner.vocabulary_size} tokens, "
                f"{reference} of {first.vocabulary_size}: they cannot be scored "
                "on the same tokens. Compare models that share a tokenizer."
            )
        if runner.add_bos != first.add_bos:
            raise ValueError(
                f"{name} {'adds' if runner.add_bos else 'does not add'} a start "
                f"token and {reference} {'does' if first.add_bos else 'does not'}: "
                "their tokenizers differ. Compare models that share a tokenizer."
            )
        if probe is None:
            probe = first.tokenize(probe_text)
        try:
            theirs = runner.tokenize(probe_text)
        except ValueError:  # no tokenizer of its own: it reads the shared ids
            continue
        if not np.array_equal(theirs, probe):
            cut = (
                int(np.argmax(np.not_equal(theirs[: len(probe)], probe[: len(theirs)])))
                if min(len(theirs), len(probe))
                else 0
            )
            raise ValueError(
                f"{name} tokenizes the text differently from {reference} (token "
                f"{cut} of the first {_PROBE_CHARS} characters differs): another "
                "vocabulary or tokenizer. Compare models that share a tokenizer."
            )
    bos = runners[reference].bos_id if runners[reference].add_bos else None
    return ids, bos


def check_context(runners, context):
    """Refuses a context above any model's own context length."""
    for name, runner in runners.items():
        limit = runner.context_length
        if limit is not None and context > limit:
            raise ValueError(
                f"--context {context} is above {name}'s context length ({limit} "
                f"tokens). Pass --context {limit} or less."
            )


def measure(
    runners, ids, context, bos_id=None, base=None, max_chunks=None, verbose=True
):
    """Each model's `llama-perplexity` figures on the same chunks.

    Args:
        runners: dict `{name: runner}`.
        ids: the text's shared token ids (`shared_tokens`).
        context: int. Tokens per chunk.
        bos_id: int or None. The start token each chunk opens with.
        base: str or None. The name of the runner the others are compared
            with (`--kl-divergence`); it is scored too. Defaults to None.
        max_chunks: int or None. The first chunks only. Defaults to None.
        verbose: bool. A progress bar. Defaults to True.

    Returns:
        dict `{name: figures}`: `perplexity_summary`'s keys, and for every
        model but the base, `kl_summary`'s under `"vs_base"`; each with
        `context` and `chunks`.
    """
    import keras

    inputs, targets = protocol.chunks(ids, context, bos_id, max_chunks)
    first = protocol.first_scored(context)
    scores = {name: protocol.TokenScores() for name in runners}
    bar = keras.utils.Progbar(
        len(inputs),
        verbose=1 if verbose else 0,
        unit_name="chunk",
        stateful_metrics=["ppl"],
    )
    for chunk, (tokens, target) in enumerate(zip(inputs, targets)):
        wanted = target[first + 1 :]
        base_logits = (
            runners[base].logits(tokens, first)[:-1] if base is not None else None
        )
        for name, runner in runners.items():
            if name == base:
                scores[name].add(base_logits, wanted)
                continue
            z = runner.logits(tokens, first)[:-1]
            scores[name].add(z, wanted, base_logits)
        nll = scores[next(iter(runners))].values("nll")
        bar.update(chunk + 1, [("ppl", float(np.exp(nll.mean())))])
    result = {}
    for name, score in scores.items():
        figures = protocol.perplexity_summary(score.values("nll"))
        figures.update(context=int(context), chunks=int(len(inputs)))
        if base is not None and name != base:
            figures["vs_base"] = protocol.kl_summary(score)
        result[name] = figures
    return result


def nll_by_position(runner, ids, context, bos_id=None, max_chunks=None):
    """`−log p` of every next token of each chunk, by position: how a model
    uses its context (the protocol's chunks, all positions scored).

    Returns:
        float64 array `(chunks, context − 1)`: row `c`, column `j` is the
        loss of the token at position `j + 1` of chunk `c`.
    """
    inputs, targets = protocol.chunks(ids, context, bos_id, max_chunks)
    rows = []
    for tokens, target in zip(inputs, targets):
        score = protocol.TokenScores()
        score.add(runner.logits(tokens, 0)[:-1], target[1:])
        rows.append(score.values("nll"))
    return np.stack(rows)
