"""Tokenizers built from a GGUF file's own vocabulary (no download).

GGUF carries the tokenizer in its metadata: `tokenizer.ggml.model` names the
kind (`gpt2`: byte-level BPE with `tokens` and `merges`; `llama`: a
SentencePiece model with `tokens`, `scores` and `token_type`), plus the ids of
the special tokens. llama.cpp's token types are SentencePiece's own piece types
(1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), so a
SentencePiece model proto can be rebuilt piece for piece.
"""

import keras
import keras_hub

from keras_guide.gguf.reader import GGUFError

SUPPORTED = ("gpt2", "llama")
_CONTROL = 3
_BYTE = 6


def tokenizer_model(f):
    """The file's tokenizer kind, checked against what can be built."""
    model = f.get("tokenizer.ggml.model")
    if model not in SUPPORTED:
        raise GGUFError(
            f"`{f.path}` has tokenizer model {model!r}; keras_guide builds "
            f"{SUPPORTED} (byte-level BPE and SentencePiece)."
        )
    return model


def _token(f, tokens, key, default=None):
    index = f.get(key)
    if index is None:
        return default
    if not 0 <= index < len(tokens):
        raise GGUFError(
            f"`{f.path}`: `{key}` = {index} is outside the vocabulary of "
            f"{len(tokens)} tokens."
        )
    return tokens[index]


@keras.saving.register_keras_serializable(package="keras_guide")
class GGUFBytePairTokenizer(keras_hub.models.Llama3Tokenizer):
    """KerasHub's Llama 3 tokenizer with a GGUF file's own special tokens.

    `Llama3Tokenizer.get_config()` does not save its start, end and other
    special tokens, so a reloaded one expects Llama 3's (`<|begin_of_text|>`,
    ...) and fails on any other vocabulary; this one saves them. A model that
    holds one loads once `keras_guide.gguf` is imported.
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        bos_token=None,
        eos_token=None,
        misc_special_tokens=(),
        **kwargs,
    ):
        self._specials = dict(
            bos_token=bos_token,
            eos_token=eos_token,
            misc_special_tokens=sorted(misc_special_tokens),
        )
        super().__init__(
            vocabulary=vocabulary,
            merges=merges,
            bos_token=bos_token,
            eos_token=eos_token,
            misc_special_tokens=set(misc_special_tokens),
            **kwargs,
        )

    def get_config(self):
        return {**super().get_config(), **self._specials}


def byte_pair_tokenizer(f, cls=None):
    """A byte-level BPE tokenizer (KerasHub's `Llama3Tokenizer`, saving the
    file's special tokens with its config).

    The start and end tokens are the file's `bos`/`eos`; every control token
    is kept whole (never split by the pre-tokenizer).
    """
    cls = cls or GGUFBytePairTokenizer
    tokens = f.require("tokenizer.ggml.tokens")
    merges = f.require("tokenizer.ggml.merges")
    types = f.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    bos = _token(f, tokens, "tokenizer.ggml.bos_token_id")
    eos = _token(f, tokens, "tokenizer.ggml.eos_token_id")
    if bos is None or eos is None:
        raise GGUFError(
            f"`{f.path}` names no bos/eos token (`tokenizer.ggml.bos_token_id`, "
            "`tokenizer.ggml.eos_token_id`); the tokenizer needs both."
        )
    control = {t for t, kind in zip(tokens, types) if kind == _CONTROL} - {bos, eos}
    vocabulary = {token: index for index, token in enumerate(tokens)}
    if len(vocabulary) != len(tokens):
        raise GGUFError(f"`{f.path}`: the vocabulary repeats tokens.")
    return cls(
        vocabulary=vocabulary,
        merges=list(merges),
        bos_token=bos,
        eos_token=eos,
        misc_special_tokens=control,
    )


def sentencepiece_proto(f):
    """A serialized SentencePiece `ModelProto` rebuilt from the file's vocabulary."""
    try:
        from sentencepiece import sentencepiece_model_pb2 as sp_pb2
    except ImportError as error:
        raise ImportError(
            "A SentencePiece GGUF tokenizer needs `sentencepiece`: pip install "
            "sentencepiece"
        ) from error
    tokens = f.require("tokenizer.ggml.tokens")
    scores = f.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = f.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if not len(tokens) == len(scores) == len(types):
        raise GGUFError(
            f"`{f.path}`: {len(tokens)} tokens but {len(scores)} scores and "
            f"{len(types)} token types."
        )
    proto = sp_pb2.ModelProto()
    trainer = proto.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(tokens)
    trainer.byte_fallback = _BYTE in types
    for field, key in (
        ("unk_id", "unknown"),
        ("bos_id", "bos"),
        ("eos_id", "eos"),
        ("pad_id", "padding"),
    ):
        index = f.get(f"tokenizer.ggml.{key}_token_id")
        setattr(trainer, field, -1 if index is None else int(index))
    dummy_prefix = bool(f.get("tokenizer.ggml.add_space_prefix", True))
    for spec in (proto.normalizer_spec, proto.denormalizer_spec):
        spec.add_dummy_prefix = dummy_prefix
        spec.escape_whitespaces = True
        spec.remove_extra_whitespaces = False
    proto.normalizer_spec.name = "identity"
    # llama.cpp may type the unknown token as a control token; SentencePiece
    # needs its piece typed UNKNOWN.
    unknown = trainer.unk_id
    for index, (token, score, kind) in enumerate(zip(tokens, scores, types)):
        piece = proto.pieces.add()
        piece.piece = token
        piece.score = float(score)
        piece.type = 2 if index == unknown else (int(kind) if 1 <= kind <= 6 else 1)
    return proto.SerializeToString()
