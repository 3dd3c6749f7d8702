"""A GGUF vocabulary as Hugging Face tokenizer files that give llama.cpp's ids.

The source is llama.cpp's own description of the tokenizer (the
`tokenizer.*` keys of a GGUF file, or those `save_gguf` would write for a
KerasHub tokenizer), and the target the `tokenizers` library's
`tokenizer.json`, which `transformers.AutoTokenizer` loads as it is. Each step
of llama.cpp's algorithm (`keras_guide.gguf.llama_cpp_tokenizer`) has its
`tokenizers` counterpart:

- special tokens cut out of the raw text first: control, unknown and
  user-defined tokens are `added_tokens`, the control and unknown ones
  `special` (llama.cpp's `parse_special=false` keeps those as text, as
  `transformers`' `split_special_tokens=True` does), none normalized;
- byte-level BPE (`gpt2`): each of the pre-tokenizer's regular expressions
  is a `Split` that keeps its matches and the text between them, then the
  bytes are mapped to symbols (`ByteLevel` without its own expression), and
  the merges apply by rank (`ignore_merges` where llama.cpp takes a piece
  that is a token whole);
- SentencePiece (`llama`): the space prefix and `▁` are a normalizer; llama.cpp
  merges the adjacent pair whose result has the highest score, which is BPE
  over the merges `a b` of every token `t = a + b` ranked by `t`'s score;
  characters outside the vocabulary become byte tokens (`byte_fallback`).

A vocabulary these files cannot express (a merge whose parts or result are
not tokens, a pre-tokenizer llama.cpp has that is not ported, another
tokenizer model) is refused before anything is written.
"""

from keras_guide.gguf.llama_cpp_tokenizer import PRE_TOKENIZERS

_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_SPECIAL_TYPES = (_CONTROL, _UNKNOWN, _USER_DEFINED)
_SPACE = "▁"
# Control tokens llama.cpp ends generation at whatever the file's ids say
# (`llama-vocab.cpp`; the texts every version since 2024 lists).
END_OF_TURN = (
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
)


class TokenizerError(ValueError):
    """A vocabulary the Hugging Face tokenizer files cannot express."""


def _token(meta, tokens, name):
    index = meta.get(f"tokenizer.ggml.{name}_token_id")
    if index is None:
        return None, None
    if not 0 <= int(index) < len(tokens):
        raise TokenizerError(
            f"`tokenizer.ggml.{name}_token_id` = {index} is outside the vocabulary "
            f"of {len(tokens)} tokens."
        )
    return int(index), tokens[int(index)]


def _added_tokens(tokens, types):
    return [
        {
            "id": index,
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": kind != _USER_DEFINED,
        }
        for index, (token, kind) in enumerate(zip(tokens, types))
        if kind in _SPECIAL_TYPES and token
    ]


def _split_merge(rank, merge):
    # llama.cpp splits at the first space after the first character.
    cut = merge.find(" ", 1)
    if cut < 0:
        raise TokenizerError(f"Merge {rank} ({merge!r}) is not 'left right'.")
    return merge[:cut], merge[cut + 1 :]


def _bpe_model(meta, tokens, vocab):
    pre = meta.get("tokenizer.ggml.pre") or "default"
    if pre not in PRE_TOKENIZERS:
        raise TokenizerError(
            f"The byte-level pre-tokenizer {pre!r} is not ported from llama.cpp; "
            f"ported: {sorted(PRE_TOKENIZERS)}."
        )
    patterns, whole = PRE_TOKENIZERS[pre]
    merges, seen = [], set()
    for rank, merge in enumerate(meta.get("tokenizer.ggml.merges") or []):
        left, right = _split_merge(rank, merge)
        missing = [t for t in (left, right, left + right) if t not in vocab]
        if missing:
            raise TokenizerError(
                f"Merge {rank} ({merge!r}) uses {missing[0]!r}, which is not a "
                "token: tokenizer.json cannot express it."
            )
        if (left, right) not in seen:  # llama.cpp keeps the first rank
            seen.add((left, right))
            merges.append([left, right])
    splits = [
        {
            "type": "Split",
            "pattern": {"Regex": pattern},
            "behavior": "Isolated",
            "invert": False,
        }
        for pattern in patterns
    ]
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": False,
        "use_regex": False,
    }
    model = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": bool(whole),
        "vocab": vocab,
        "merges": merges,
    }
    return {
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": splits + [byte_level]},
        "model": model,
        "decoder": dict(byte_level),
    }


def sentencepiece_merges(tokens, scores):
    """The BPE merges that reproduce llama.cpp's SentencePiece merging.

    llama.cpp merges, among adjacent symbols, the pair whose concatenation is
    the token of highest score (leftmost first): every split `t = a + b` of
    a token into two tokens is a merge, ranked by `t`'s score (then id).

    Returns:
        A list of `[a, b]` in rank order.
    """
    vocab = {token: index for index, token in enumerate(tokens)}
    ranked = sorted(range(len(tokens)), key=lambda i: (-float(scores[i]), i))
    merges = []
    for index in ranked:
        token = tokens[index]
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append([left, right])
    return merges


def _sentencepiece_model(meta, tokens, types, vocab, unknown):
    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    if len(scores) != len(tokens):
        raise TokenizerError(f"{len(tokens)} tokens but {len(scores)} scores.")
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    normalizers = [{"type": "Replace", "pattern": {"String": " "}, "content": _SPACE}]
    if prefix:
        normalizers.insert(0, {"type": "Prepend", "prepend": _SPACE})
    decoders = [
        {"type": "Replace", "pattern": {"String": _SPACE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    model = {
        "type": "BPE",
        "dropout": None,
        "unk_token": unknown,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": True,
        "byte_fallback": _BYTE in types,
        "ignore_merges": False,
        "vocab": vocab,
        "merges": sentencepiece_merges(tokens, scores),
    }
    return {
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "model": model,
        "decoder": {"type": "Sequence", "decoders": decoders},
    }


def _post_processor(bos, eos, add_bos, add_eos):
    single = [{"Sequence": {"id": "A", "type_id": 0}}]
    pair = [
        {"Sequence": {"id": "A", "type_id": 0}},
        {"Sequence": {"id": "B", "type_id": 1}},
    ]
    specials = {}
    for add, (index, token), at in ((add_bos, bos, 0), (add_eos, eos, None)):
        if not add:
            continue
        item = {"SpecialToken": {"id": token, "type_id": 0}}
        for sequence in (single, pair):
            sequence.insert(len(sequence) if at is None else at, item)
        specials[token] = {"id": token, "ids": [index], "tokens": [token]}
    return {
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": specials,
    }


def _vocabulary(meta):
    """`(kind, tokens, types, vocab)` of a GGUF vocabulary these files can
    express: its tokenizer model, tokens, token types and `{token: id}`.

    Raises:
        TokenizerError: another tokenizer model, a token type count that is
            not the token count, or a token listed twice.
    """
    kind = meta.get("tokenizer.ggml.model")
    if kind not in ("gpt2", "llama"):
        raise TokenizerError(
            f"Tokenizer model {kind!r} has no Hugging Face form here; supported: "
            "'gpt2' (byte-level BPE) and 'llama' (SentencePiece)."
        )
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = [
        int(t) for t in meta.get("tokenizer.ggml.token_type") or [_NORMAL] * len(tokens)
    ]
    if len(types) != len(tokens):
        raise TokenizerError(f"{len(tokens)} tokens but {len(types)} token types.")
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        repeated = next(t for i, t in enumerate(tokens) if vocab[t] != i)
        raise TokenizerError(
            f"The vocabulary repeats the token {repeated!r}; tokenizer.json maps "
            "each token to one id."
        )
    return kind, tokens, types, vocab


def _added_ends(meta, kind, bos, eos):
    """`(add_bos, add_eos)`: whether sequences open with the start token and
    close with the end token (llama.cpp's defaults where the file is silent).

    Raises:
        TokenizerError: a token is added that the vocabulary does not name.
    """
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    if add_bos is None:  # llama.cpp's defaults, as `LlamaCppTokenizer.from_gguf`
        pre = meta.get("tokenizer.ggml.pre") or "default"
        add_bos = kind == "llama" or PRE_TOKENIZERS.get(pre, (0, False))[1]
    add_bos = bool(add_bos)
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    for add, (index, name) in ((add_bos, (bos[0], "bos")), (add_eos, (eos[0], "eos"))):
        if add and index is None:
            raise TokenizerError(
                f"The vocabulary adds a {name} token it does not name "
                f"(`tokenizer.ggml.{name}_token_id`)."
            )
    return add_bos, add_eos


def _stop_ids(meta, tokens, types, vocab):
    """The ids generation stops at: the end, end-of-turn and end-of-message
    tokens the file names, then the control tokens of `END_OF_TURN`."""
    ends = [_token(meta, tokens, name)[0] for name in ("eos", "eot", "eom")]
    stops = [i for i in ends if i is not None] + [
        i
        for i in (vocab.get(t) for t in END_OF_TURN)
        if i is not None and types[i] == _CONTROL
    ]
    return list(dict.fromkeys(stops))


def files(meta, context_length):
    """`tokenizer.json`, `tokenizer_config.json` and the special token ids.

    Args:
        meta: dict. `{key: value}` of a GGUF file's `tokenizer.*` keys.
        context_length: int. The model's context (`model_max_length`).

    Returns:
        `(tokenizer_json, tokenizer_config, special_ids)`: two dicts to write
        as JSON, and `{"bos_token_id", "eos_token_id", "pad_token_id",
        "stop_token_ids"}` for the model and generation configs; the stop
        tokens are the end, end-of-turn and end-of-message tokens the file
        names, and the control tokens llama.cpp ends generation at by their
        text (`END_OF_TURN`), so `generate` stops where llama.cpp does.

    Raises:
        TokenizerError: a vocabulary these files cannot express.
    """
    kind, tokens, types, vocab = _vocabulary(meta)
    bos, eos = _token(meta, tokens, "bos"), _token(meta, tokens, "eos")
    pad, unk = _token(meta, tokens, "padding"), _token(meta, tokens, "unknown")
    stops = _stop_ids(meta, tokens, types, vocab)
    add_bos, add_eos = _added_ends(meta, kind, bos, eos)
    if kind == "gpt2":
        pipeline = _bpe_model(meta, tokens, vocab)
    else:
        unknown = unk[1]
        if unknown is None:
            unknown = next((t for t, k in zip(tokens, types) if k == _UNKNOWN), None)
        pipeline = _sentencepiece_model(meta, tokens, types, vocab, unknown)
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added_tokens(tokens, types),
        "normalizer": pipeline["normalizer"],
        "pre_tokenizer": pipeline["pre_tokenizer"],
        "post_processor": _post_processor(bos, eos, add_bos, add_eos),
        "decoder": pipeline["decoder"],
        "model": pipeline["model"],
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos[1],
        "eos_token": eos[1],
        "unk_token": unk[1],
        "pad_token": pad[1],
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(context_length),
    }
    template = meta.get("tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    special_ids = {
        "bos_token_id": bos[0],
        "eos_token_id": eos[0],
        "pad_token_id": pad[0],
        "stop_token_ids": stops,
    }
    return tokenizer_json, config, special_ids
