"""`load_gguf`: a llama.cpp checkpoint as a KerasHub causal language model."""

import ctypes
import os

from keras_guide.gguf import architectures
from keras_guide.gguf import tokenizers
from keras_guide.gguf.reader import GGUFError
from keras_guide.gguf.reader import GGUFFile


def load_gguf(path, dtype=None):
    """Imports a GGUF checkpoint as a KerasHub task model with its tokenizer.

    Every tensor is dequantized to float32 (then cast to `dtype`) and mapped
    onto the KerasHub backbone of its architecture; the preprocessor's
    tokenizer is rebuilt from the file's own vocabulary, so the model
    generates text offline. Every weight of the backbone is set from the file
    and every tensor of the file is used, or nothing is returned.

    Supported: `llama` (Llama 1-3 without per-frequency RoPE factors,
    SmolLM/SmolLM2; as `Llama3CausalLM` for a byte-level BPE vocabulary,
    `LlamaCausalLM` for SentencePiece) and `gemma3` (text-only Gemma 3, as
    `Gemma3CausalLM`), in any quantization type the `gguf` package
    dequantizes.

    Args:
        path: str or path-like. The `.gguf` file.
        dtype: str, `keras.DTypePolicy` or None. The model's dtype policy
            (e.g. `"float32"`, `"bfloat16"`); `None` for Keras' default.
            Defaults to `None`.

    Returns:
        A KerasHub `CausalLM` (task model) with `backbone` and `preprocessor`.
        Its tokenizer gives llama.cpp's token ids (`GGUFBytePairTokenizer`,
        `GGUFGemma3Tokenizer` or `GGUFLlamaTokenizer`: KerasHub's classes,
        tokenizing with llama.cpp's algorithm). Saved with `model.save(...)`
        or `save_to_preset`, it loads again once `keras_guide` is
        imported.

    Raises:
        GGUFError: the file is missing, not GGUF, truncated or corrupted, of
            an unsupported architecture, quantization type or tokenizer, or
            its tensors do not fit the architecture.
        ImportError: `gguf` (or `sentencepiece`) is not installed.

    Example:
    >>> lm = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> lm.generate("The capital of France is", max_length=16)  # doctest: +SKIP
    """
    import keras_hub

    from keras_guide import _hub

    # A tied Llama must save a config that rebuilds it tied.
    _hub.fix_llama_config()
    f = GGUFFile(path)
    arch = architectures.of_file(f)
    kind = tokenizers.tokenizer_model(f)
    if kind not in arch.classes:
        raise GGUFError(
            f"`{f.path}`: a {f.architecture!r} model with a {kind!r} tokenizer is "
            f"not supported; expected one of {sorted(arch.classes)}."
        )
    backbone_cls, tokenizer_cls, preprocessor_cls, task_cls = (
        getattr(keras_hub.models, name) for name in arch.classes[kind]
    )
    config = arch.backbone_config(f)
    # Counted before the tokenizer is built from them: a file may declare
    # millions of tokens its embedding table does not have.
    declared = f.length("tokenizer.ggml.tokens")
    if declared is not None and declared != config["vocabulary_size"]:
        raise GGUFError(
            f"`{f.path}`: the tokenizer has {declared} tokens but the embedding "
            f"table {config['vocabulary_size']} rows."
        )
    tokenizer = _tokenizer(f, kind, tokenizer_cls)
    if tokenizer.vocabulary_size() != config["vocabulary_size"]:
        raise GGUFError(
            f"`{f.path}`: the tokenizer has {tokenizer.vocabulary_size()} tokens "
            f"but the embedding table {config['vocabulary_size']} rows."
        )
    backbone = backbone_cls(**config, dtype=dtype)
    _assign(f, backbone, arch.weights(f, config, backbone))
    preprocessor = preprocessor_cls(
        tokenizer, add_start_token=bool(f.get("tokenizer.ggml.add_bos_token", True))
    )
    task = task_cls(backbone=backbone, preprocessor=preprocessor)
    # Where the weights came from: `save_gguf` refuses to write over it.
    task._keras_guide_source = backbone._keras_guide_source = os.path.realpath(f.path)
    return task


def _tokenizer(f, kind, cls):
    cls = tokenizers.GGUF_CLASSES[cls.__name__]
    try:
        if kind == "gpt2":
            return tokenizers.byte_pair_tokenizer(f, cls)
        return cls(
            proto=tokenizers.sentencepiece_proto(f),
            gguf_settings=tokenizers.kept_settings(f),
            **_tokenizer_options(cls, f),
        )
    except ValueError as error:  # KerasHub's check for its family's special tokens.
        raise GGUFError(
            f"`{f.path}`: its vocabulary does not fit KerasHub's {cls.__name__}: "
            f"{error}"
        ) from error


def _tokenizer_options(cls, f):
    if issubclass(cls, tokenizers.GGUFGemma3Tokenizer):
        tokens = set(f.require("tokenizer.ggml.tokens"))
        vision = {"<img>", "<start_of_image>", "<end_of_image>"}
        return {"has_vision_tokens": vision <= tokens}
    return {}


def _release_freed_memory():
    """Returns freed heap memory to the system (glibc only; a no-op elsewhere).

    Each assignment frees a dequantized tensor and the weight's random
    initial value; glibc keeps such blocks for reuse, which on JAX held
    ~0.9x the model's float32 size until the end of the import.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _assign(f, backbone, weights):
    """Sets every backbone weight from the file, checking shapes and coverage."""
    variables = {v.path: v for v in backbone.weights}
    used, assigned = set(), set()
    _release_freed_memory()
    for path, tensor_name, value in weights:
        variable = variables.get(path)
        if variable is None or tuple(variable.shape) != value.shape:
            found = (
                "no such weight"
                if variable is None
                else f"shape {tuple(variable.shape)}"
            )
            raise GGUFError(
                f"`{f.path}`: tensor `{tensor_name}` maps to `{path}` with shape "
                f"{value.shape}, but the {type(backbone).__name__} has {found}."
            )
        variable.assign(value)
        del value
        _release_freed_memory()
        used.add(tensor_name)
        assigned.add(path)
    unset = sorted(set(variables) - assigned)
    unused = sorted(set(f.tensor_names) - used)
    if unset or unused:
        raise GGUFError(
            f"`{f.path}` does not fit {type(backbone).__name__}: "
            + (f"weights not in the file {unset}; " if unset else "")
            + (f"tensors the importer does not understand {unused}." if unused else "")
        )
