"""`load_hf`: a Hugging Face checkpoint folder as a KerasHub task model.

KerasHub reads such a folder itself (`CausalLM.from_preset`, its
`utils/transformers` converters): that is the way back for every family it
knows. For the Llama family its converter drops what `config.json` says of
the RMSNorm epsilon and of RoPE scaling given as `rope_parameters` (the
format `transformers` 5 writes), and reads every `tokenizer.json` as a
byte-level BPE, so those are passed to it here. And where the
`tokenizer.json` is one that `save_hf` writes (llama.cpp's pre-tokenizer
expressions, or SentencePiece merges), the tokenizer is rebuilt as the GGUF
tokenizer classes of `keras_guide.gguf`, which give the ids `transformers`
and llama.cpp give, instead of KerasHub's own.
"""

import json
import os

from keras_guide.gguf.llama_cpp_tokenizer import PRE_TOKENIZERS

_UNKNOWN, _CONTROL, _USER_DEFINED, _BYTE = 2, 3, 4, 6


def is_hf_folder(path):
    """Whether `path` is a folder holding a `transformers` `config.json` (a
    `model_type`, where a KerasHub preset's names a `class_name`)."""
    config = os.path.join(path, "config.json")
    if not (os.path.isdir(path) and os.path.isfile(config)):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        isinstance(found, dict)
        and "model_type" in found
        and ("class_name" not in found)
    )


class _Metadata:
    """GGUF `tokenizer.*` keys rebuilt from a folder, read as the GGUF
    tokenizer builders read a `GGUFFile` (`path`, `get`, `require`)."""

    def __init__(self, path, meta):
        self.path, self._meta = path, meta

    def get(self, key, default=None):
        return self._meta.get(key, default)

    def require(self, key):
        return self._meta[key]


def _pre_tokenizer_name(pre_tokenizer, ignore_merges):
    """llama.cpp's name of a `Split`s-then-`ByteLevel` pre-tokenizer."""
    if not pre_tokenizer or pre_tokenizer.get("type") != "Sequence":
        return None
    steps = pre_tokenizer.get("pretokenizers", [])
    if not steps or steps[-1].get("type") != "ByteLevel" or steps[-1].get("use_regex"):
        return None
    patterns = []
    for step in steps[:-1]:
        if step.get("type") != "Split" or step.get("behavior") != "Isolated":
            return None
        patterns.append(step.get("pattern", {}).get("Regex"))
    for name, (known, whole) in PRE_TOKENIZERS.items():
        if list(known) == patterns and bool(whole) == bool(ignore_merges):
            return name
    return None


def _vocabulary_tokens(vocab):
    """The tokens of a `{token: id}` vocabulary in id order, or `None` where
    the ids are not `0 .. len - 1` each once."""
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        if not 0 <= index < len(tokens) or tokens[index] is not None:
            return None
        tokens[index] = token
    return tokens


def _token_types(tokenizer_json, tokens, unknown):
    """GGUF token types from `added_tokens` (special: control or unknown;
    others user-defined; the rest normal), or `None` where an added token is
    not the vocabulary's."""
    types = [1] * len(tokens)
    for added in tokenizer_json.get("added_tokens", []):
        index = added["id"]
        if not 0 <= index < len(tokens) or tokens[index] != added["content"]:
            return None
        types[index] = (
            _USER_DEFINED
            if not added["special"]
            else _UNKNOWN
            if added["content"] == unknown
            else _CONTROL
        )
    return types


def _sentencepiece_keys(normalizer, vocab, tokens, types, merges):
    """The `tokenizer.ggml.*` keys of a SentencePiece vocabulary (marking its
    `<0xNN>` tokens as bytes in `types`), or `None` for a normalizer
    `save_hf` does not write."""
    steps = normalizer.get("normalizers", [])
    if not steps or steps[-1] != {
        "type": "Replace",
        "pattern": {"String": " "},
        "content": "▁",
    }:
        return None
    scores = [0.0] * len(tokens)
    made = set()
    for rank, merge in enumerate(merges):
        token = merge.replace(" ", "", 1)
        if token in vocab and token not in made:
            made.add(token)
            scores[vocab[token]] = -float(rank + 1)
    for index, token in enumerate(tokens):
        if (
            len(token) == 6
            and token.startswith("<0x")
            and token.endswith(">")
            and types[index] == 1
        ):
            types[index] = _BYTE
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.add_space_prefix": steps[0].get("type") == "Prepend",
    }


def _byte_level_keys(tokenizer_json, model, merges):
    """The `tokenizer.ggml.*` keys of a byte-level BPE vocabulary, or `None`
    for a pre-tokenizer llama.cpp does not name."""
    pre = _pre_tokenizer_name(
        tokenizer_json.get("pre_tokenizer"), model.get("ignore_merges")
    )
    if pre is None:
        return None
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.merges": merges,
    }


def _config_keys(tokenizer_config, vocab):
    """The special token ids, whether the start and end tokens are added, and
    the chat template, from `tokenizer_config.json`."""
    meta = {}
    for name, key in (
        ("bos", "bos_token"),
        ("eos", "eos_token"),
        ("unknown", "unk_token"),
        ("padding", "pad_token"),
    ):
        token = tokenizer_config.get(key)
        if isinstance(token, dict):
            token = token.get("content")
        if token is not None and token in vocab:
            meta[f"tokenizer.ggml.{name}_token_id"] = vocab[token]
    meta["tokenizer.ggml.add_bos_token"] = bool(
        tokenizer_config.get("add_bos_token", False)
    )
    meta["tokenizer.ggml.add_eos_token"] = bool(
        tokenizer_config.get("add_eos_token", False)
    )
    if tokenizer_config.get("chat_template"):
        meta["tokenizer.chat_template"] = tokenizer_config["chat_template"]
    return meta


def gguf_tokenizer_metadata(tokenizer_json, tokenizer_config):
    """The GGUF `tokenizer.*` keys a `tokenizer.json` written as `save_hf`
    writes it stands for, or `None` for any other.

    The inverse of `keras_guide.hf.tokenizer.files`: added tokens are control
    tokens (special) or user-defined ones; a SentencePiece token's score is
    minus the rank of the first merge that makes it.

    Args:
        tokenizer_json: dict. The parsed `tokenizer.json`.
        tokenizer_config: dict. The parsed `tokenizer_config.json`.

    Returns:
        `{key: value}`, or `None` for a tokenizer `save_hf` does not write.
    """
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        return None
    vocab = model["vocab"]
    tokens = _vocabulary_tokens(vocab)
    if tokens is None:
        return None
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = _token_types(tokenizer_json, tokens, model.get("unk_token"))
    if types is None:
        return None
    normalizer = tokenizer_json.get("normalizer") or {}
    if model.get("byte_fallback") or normalizer.get("type") == "Sequence":
        keys = _sentencepiece_keys(normalizer, vocab, tokens, types, merges)
    else:
        keys = _byte_level_keys(tokenizer_json, model, merges)
    if keys is None:
        return None
    meta = {"tokenizer.ggml.tokens": tokens, **keys}
    meta["tokenizer.ggml.token_type"] = types
    meta.update(_config_keys(tokenizer_config, vocab))
    return meta


def _llama_overrides(config):
    """`LlamaBackbone` arguments KerasHub's converter leaves at their
    defaults: the RMSNorm epsilon, and RoPE scaling in `rope_parameters`."""
    overrides = {"layer_norm_epsilon": float(config.get("rms_norm_eps", 1e-6))}
    rope = config.get("rope_parameters") or {}
    kind = rope.get("rope_type", "default")
    if config.get("rope_scaling") is None and kind == "linear":
        overrides["rope_position_scaling_factor"] = float(rope["factor"])
    elif config.get("rope_scaling") is None and kind == "llama3":
        overrides.update(
            rope_frequency_adjustment_factor=float(rope["factor"]),
            rope_low_freq_factor=float(rope["low_freq_factor"]),
            rope_high_freq_factor=float(rope["high_freq_factor"]),
            rope_pretraining_sequence_length=int(
                rope["original_max_position_embeddings"]
            ),
        )
    elif kind not in ("default", "linear", "llama3"):
        raise ValueError(
            f"RoPE type {kind!r} has no KerasHub Llama form; supported: default, "
            "linear, llama3."
        )
    return overrides


def load_hf(folder):
    """Loads a Hugging Face checkpoint folder with KerasHub's converter.

    Args:
        folder: a folder with `config.json` and `model.safetensors` (and the
            tokenizer files), e.g. one `save_hf` wrote.

    Returns:
        A KerasHub `CausalLM` (or a backbone, for a folder without a task
        KerasHub knows). For a Llama or Gemma 3 folder whose `tokenizer.json`
        is one `save_hf` writes, its tokenizer is the GGUF tokenizer class
        (`keras_guide.gguf`) of that vocabulary.

    Raises:
        ValueError: a folder KerasHub cannot read (its message).
    """
    import keras_hub

    folder = os.fspath(folder)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    model_type = config.get("model_type")
    if model_type not in ("llama", "gemma3_text"):
        try:
            return keras_hub.models.CausalLM.from_preset(folder)
        except Exception:  # noqa: BLE001 (a folder without a task: the backbone)
            return keras_hub.models.Backbone.from_preset(folder)
    overrides = _llama_overrides(config) if model_type == "llama" else {}
    backbone = keras_hub.models.Backbone.from_preset(folder, **overrides)
    meta = _folder_tokenizer(folder)
    if meta is None:  # a tokenizer.json of another origin: KerasHub's reading
        task_cls = (
            keras_hub.models.Llama3CausalLM
            if model_type == "llama"
            else keras_hub.models.Gemma3CausalLM
        )
        preprocessor = task_cls.preprocessor_cls.from_preset(folder)
        return task_cls(backbone=backbone, preprocessor=preprocessor)
    from keras_guide.gguf import gemma3
    from keras_guide.gguf import llama
    from keras_guide.gguf import loader

    kind = meta["tokenizer.ggml.model"]
    classes = (llama if model_type == "llama" else gemma3).CLASSES
    if kind not in classes:
        raise ValueError(
            f"{folder}: a {model_type} model with a {kind!r} tokenizer; expected "
            f"one of {sorted(classes)}."
        )
    _, tokenizer_cls, preprocessor_cls, task_cls = (
        getattr(keras_hub.models, name) for name in classes[kind]
    )
    tokenizer = loader._tokenizer(_Metadata(folder, meta), kind, tokenizer_cls)
    preprocessor = preprocessor_cls(
        tokenizer, add_start_token=meta["tokenizer.ggml.add_bos_token"]
    )
    return task_cls(backbone=backbone, preprocessor=preprocessor)


def _folder_tokenizer(folder):
    paths = [
        os.path.join(folder, n) for n in ("tokenizer.json", "tokenizer_config.json")
    ]
    if not all(os.path.isfile(p) for p in paths):
        return None
    with open(paths[0], encoding="utf-8") as f:
        tokenizer_json = json.load(f)
    with open(paths[1], encoding="utf-8") as f:
        tokenizer_config = json.load(f)
    return gguf_tokenizer_metadata(tokenizer_json, tokenizer_config)
