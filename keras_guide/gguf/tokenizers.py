"""KerasHub tokenizers built from a GGUF file's own vocabulary (no download),
that give llama.cpp's token ids.

GGUF carries the tokenizer in its metadata: `tokenizer.ggml.model` names the
kind (`gpt2`: byte-level BPE with `tokens` and `merges`; `llama`: a
SentencePiece model with `tokens`, `scores` and `token_type`), plus the ids of
the special tokens. llama.cpp's token types are SentencePiece's own piece types
(1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), so a
SentencePiece model proto can be rebuilt piece for piece.

KerasHub's own tokenizers over that vocabulary split some text otherwise than
llama.cpp (runs of spaces, indented code, digits, Gemma's whitespace tokens),
so the classes here keep KerasHub's class (its preprocessors, `generate`,
`detokenize`, presets) but `tokenize` through `LlamaCppTokenizer`, the port
of llama.cpp's algorithm, built from the tokenizer's own vocabulary. A model
or preset holding one loads once `keras_guide` is imported (`_saving.py`);
its config ends with the line saying so (`requires`), which Keras prints where
the package is missing.

Each keeps the file's scalar tokenizer settings (`gguf_settings`: the chat
template, the pre-tokenizer, ...) so that a `.keras` file, a preset and a
GGUF file written from it carry them on.
"""

import keras
import keras_hub
import numpy as np

from keras_guide import _saving
from keras_guide.gguf.llama_cpp_tokenizer import LlamaCppTokenizer
from keras_guide.gguf.reader import GGUFError

SUPPORTED = ("gpt2", "llama")
_NORMAL, _UNKNOWN, _CONTROL = 1, 2, 3
_BYTE = 6
# Scalar `tokenizer.*` keys a byte-level tokenizer keeps from its file, so
# that an exported student carries them (the lists are rebuilt from the
# vocabulary and merges).
_KEPT_KEYS = (
    "tokenizer.ggml.pre",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.chat_template",
)


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


class _LlamaCppIds:
    """`tokenize` through llama.cpp's algorithm (`llama_cpp_tokenizer()`).

    Start and end tokens are left to the preprocessor, as KerasHub's own
    `tokenize` does; `sequence_length` pads or truncates the same way.
    `gguf_settings` holds the file's scalar `tokenizer.*` keys a GGUF file
    written from the model carries on (`_KEPT_KEYS`).
    """

    def __init__(self, *args, gguf_settings=None, **kwargs):
        self.gguf_settings = dict(gguf_settings or {})
        super().__init__(*args, **kwargs)

    def _extra_config(self):
        return {}

    def get_config(self):
        # `requires` last: Keras' error where keras_guide is missing prints
        # this config, so its message ends with what to install.
        return {
            **super().get_config(),
            **self._extra_config(),
            "gguf_settings": self.gguf_settings,
            "requires": _saving.REQUIRES,
        }

    @classmethod
    def from_config(cls, config):
        return super().from_config({k: v for k, v in config.items() if k != "requires"})

    def llama_cpp_tokenizer(self):
        """The `LlamaCppTokenizer` of this vocabulary (built once)."""
        cached = getattr(self, "_llama_cpp", None)
        if cached is None:
            cached = self._build_llama_cpp()
            self._llama_cpp = cached
        return cached

    def tokenize(self, inputs):
        import tensorflow as tf

        encoder = self.llama_cpp_tokenizer()
        if not isinstance(inputs, (tf.Tensor, tf.RaggedTensor)):
            inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        unbatched = inputs.shape.rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)

        def encode(strings):
            rows = [
                encoder.encode(s.decode("utf-8", errors="replace"), add_special=False)
                for s in strings.numpy().reshape(-1)
            ]
            flat = np.fromiter((i for row in rows for i in row), np.int32)
            return flat, np.asarray([len(row) for row in rows], np.int64)

        flat, lengths = tf.py_function(encode, [inputs], [tf.int32, tf.int64])
        flat.set_shape([None])
        lengths.set_shape([None])
        tokens = tf.RaggedTensor.from_row_lengths(flat, lengths)
        if self.sequence_length:
            tokens = tokens.to_tensor(
                default_value=self.pad_token_id or 0,
                shape=[None, self.sequence_length],
            )
        if unbatched:
            tokens = tokens[0]
        return tf.cast(tokens, self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_guide")
class GGUFBytePairTokenizer(_LlamaCppIds, keras_hub.models.Llama3Tokenizer):
    """KerasHub's Llama 3 tokenizer over a GGUF byte-level vocabulary,
    tokenizing as llama.cpp does.

    `Llama3Tokenizer.get_config()` does not save its start, end and other
    special tokens, so a reloaded one expects Llama 3's (`<|begin_of_text|>`,
    ...) and fails on any other vocabulary; this one saves them, with the
    file's pre-tokenizer, special token types and the scalar settings an
    exported GGUF carries over (`gguf_settings`).
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        bos_token=None,
        eos_token=None,
        misc_special_tokens=(),
        token_types=None,
        **kwargs,
    ):
        self._specials = dict(
            bos_token=bos_token,
            eos_token=eos_token,
            misc_special_tokens=sorted(misc_special_tokens),
            token_types=dict(token_types or {}),
        )
        super().__init__(
            vocabulary=vocabulary,
            merges=merges,
            bos_token=bos_token,
            eos_token=eos_token,
            misc_special_tokens=set(misc_special_tokens),
            **kwargs,
        )

    def _extra_config(self):
        return dict(self._specials)

    def _build_llama_cpp(self):
        return _bpe_tokenizer(self, self._specials["token_types"], self.gguf_settings)


def _bpe_tokenizer(tokenizer, token_types=None, settings=None):
    """A `LlamaCppTokenizer` from a KerasHub byte-level BPE tokenizer.

    Tokens not in `token_types` are control tokens if they are the
    tokenizer's special tokens, normal otherwise; the pre-tokenizer is
    `settings["tokenizer.ggml.pre"]`, else Llama 3's.
    """
    by_id = sorted(tokenizer.vocabulary.items(), key=lambda item: item[1])
    if [index for _, index in by_id] != list(range(len(by_id))):
        raise GGUFError(
            f"The {type(tokenizer).__name__}'s vocabulary ids are not "
            f"0..{len(by_id) - 1}."
        )
    tokens = [token for token, _ in by_id]
    kinds = token_types or {}
    specials = {t for t in tokenizer.special_tokens if t is not None}
    types = [
        kinds.get(token, _CONTROL if token in specials else _NORMAL) for token in tokens
    ]
    return LlamaCppTokenizer(
        tokens,
        types,
        model="gpt2",
        merges=list(tokenizer.merges),
        pre=(settings or {}).get("tokenizer.ggml.pre", "llama-bpe"),
        bos_id=tokenizer.start_token_id,
        eos_id=tokenizer.end_token_id,
    )


def _proto_tokenizer(self):
    """A `LlamaCppTokenizer` from a SentencePiece tokenizer's model proto."""
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    proto = sp_pb2.ModelProto()
    proto.ParseFromString(self.proto)
    pieces = proto.pieces
    spec = proto.trainer_spec
    return LlamaCppTokenizer(
        [p.piece for p in pieces],
        [int(p.type) for p in pieces],
        model="llama",
        scores=[p.score for p in pieces],
        bos_id=spec.bos_id if spec.bos_id >= 0 else None,
        eos_id=spec.eos_id if spec.eos_id >= 0 else None,
        add_space_prefix=proto.normalizer_spec.add_dummy_prefix,
    )


@keras.saving.register_keras_serializable(package="keras_guide")
class GGUFGemma3Tokenizer(_LlamaCppIds, keras_hub.models.Gemma3Tokenizer):
    """KerasHub's Gemma 3 tokenizer over a GGUF vocabulary, tokenizing as
    llama.cpp does (Gemma's user-defined whitespace tokens first)."""

    _build_llama_cpp = _proto_tokenizer


@keras.saving.register_keras_serializable(package="keras_guide")
class GGUFLlamaTokenizer(_LlamaCppIds, keras_hub.models.LlamaTokenizer):
    """KerasHub's Llama 2 (SentencePiece) tokenizer over a GGUF vocabulary,
    tokenizing as llama.cpp does."""

    _build_llama_cpp = _proto_tokenizer


# KerasHub tokenizer class names (`CLASSES` of the architecture modules) → the
# class built here.
GGUF_CLASSES = {
    "Llama3Tokenizer": GGUFBytePairTokenizer,
    "Gemma3Tokenizer": GGUFGemma3Tokenizer,
    "LlamaTokenizer": GGUFLlamaTokenizer,
}


def kept_settings(f):
    """The file's scalar `tokenizer.*` keys a tokenizer keeps (`_KEPT_KEYS`:
    the chat template, the pre-tokenizer, ...), for `gguf_settings`."""
    return {k: f.get(k) for k in _KEPT_KEYS if f.get(k) is not None}


def byte_pair_tokenizer(f, cls=None):
    """A byte-level BPE tokenizer (`GGUFBytePairTokenizer`).

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
        token_types={t: int(k) for t, k in zip(tokens, types) if k != _NORMAL},
        gguf_settings={
            **kept_settings(f),
            # llama.cpp's pre-tokenizer when the file names none.
            "tokenizer.ggml.pre": f.get("tokenizer.ggml.pre") or "default",
        },
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
        piece.type = (
            _UNKNOWN if index == unknown else (int(kind) if 1 <= kind <= 6 else _NORMAL)
        )
    return proto.SerializeToString()


def llama_cpp_tokenizer(tokenizer):
    """The `LlamaCppTokenizer` of a KerasHub tokenizer, or `None` for one
    that is not built over a GGUF-style vocabulary here."""
    build = getattr(tokenizer, "llama_cpp_tokenizer", None)
    return build() if build is not None else None


def gguf_metadata(tokenizer, add_bos):
    """The `tokenizer.*` metadata of a GGUF file for a KerasHub tokenizer.

    Args:
        tokenizer: one of this module's tokenizers, or KerasHub's
            `Llama3Tokenizer`, `Gemma3Tokenizer` or `LlamaTokenizer`.
        add_bos: whether llama.cpp adds the start token (the
            preprocessor's `add_start_token`).

    Raises:
        GGUFError: a tokenizer of another kind.
    """
    encoder = llama_cpp_tokenizer(tokenizer)
    settings = {}
    if encoder is None:
        if isinstance(tokenizer, keras_hub.models.Llama3Tokenizer):
            encoder = _bpe_tokenizer(tokenizer)
        elif isinstance(
            tokenizer,
            (keras_hub.models.Gemma3Tokenizer, keras_hub.models.LlamaTokenizer),
        ):
            encoder = _proto_tokenizer(tokenizer)
        else:
            raise GGUFError(
                f"A {type(tokenizer).__name__} cannot be written into a GGUF file; "
                f"supported: {sorted(GGUF_CLASSES)} and their GGUF variants. Pass "
                "metadata_from='teacher.gguf' to copy the teacher's tokenizer."
            )
    if isinstance(tokenizer, _LlamaCppIds):
        settings = tokenizer.gguf_settings
    meta = {
        "tokenizer.ggml.model": encoder.model,
        "tokenizer.ggml.pre": encoder.pre if encoder.model == "gpt2" else "default",
        "tokenizer.ggml.tokens": list(encoder.tokens),
        "tokenizer.ggml.token_type": [int(t) for t in encoder.types],
    }
    if encoder.model == "gpt2":
        meta["tokenizer.ggml.merges"] = list(tokenizer.merges)
    else:
        meta["tokenizer.ggml.scores"] = [float(s) for s in encoder.scores]
        meta["tokenizer.ggml.add_space_prefix"] = encoder.add_space_prefix
        unknown = [i for i, t in enumerate(encoder.types) if t == _UNKNOWN]
        if unknown:
            meta["tokenizer.ggml.unknown_token_id"] = unknown[0]
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is not None:
            meta["tokenizer.ggml.padding_token_id"] = int(pad)
    for key, index in (("bos", encoder.bos_id), ("eos", encoder.eos_id)):
        if index is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = int(index)
    meta["tokenizer.ggml.add_bos_token"] = bool(add_bos)
    meta.update({k: v for k, v in settings.items() if k not in meta})
    meta.setdefault("tokenizer.ggml.add_eos_token", False)
    return meta
