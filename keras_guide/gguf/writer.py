"""`save_gguf`: a KerasHub Llama or Gemma 3 model as a llama.cpp GGUF file.

The inverse of `load_gguf`, from the same name maps (`mapping.py`): every
weight goes to the tensor llama.cpp reads, in llama.cpp's layout (Llama's
query/key rows permuted for its rotation, Gemma's norm gains stored as
`1 + scale`, no `output.weight` for a tied head), with the metadata llama.cpp
needs (sizes, head widths, grouped key-value heads, RoPE, the sliding
window) and the tokenizer.
"""

import os

import numpy as np

from keras_guide import _files
from keras_guide.gguf import architectures
from keras_guide.gguf import dtypes as dtypes_lib
from keras_guide.gguf import tokenizers
from keras_guide.gguf.reader import GGUFError
from keras_guide.gguf.reader import GGUFFile
from keras_guide.gguf.reader import _gguf

_DEFAULT_CONTEXT = 8192


def save_gguf(
    model,
    path,
    dtype="float32",
    metadata_from=None,
    context_length=None,
    name=None,
    overwrite=False,
    description=None,
):
    """Writes a KerasHub Llama or Gemma 3 model as a GGUF file llama.cpp runs.

    The file is written under a temporary name in the same folder and
    renamed into place when complete, so `path` never holds half a file.

    Args:
        model: a KerasHub `CausalLM` (with a preprocessor, whose tokenizer is
            written) or a backbone (then pass `metadata_from`). Supported:
            `LlamaBackbone`/`Llama3Backbone` (llama.cpp's `llama`, which
            also runs SmolLM/SmolLM2) and `Gemma3Backbone` (text only), of
            any size `build_student` makes.
        path: str or path-like. The `.gguf` file to write.
        dtype: str. `"float32"`, `"float16"`, `"bfloat16"` (matrices; norm gains
            stay float32), a quantization type the `gguf` package writes
            (`"q8_0"`, `"q4_0"`: every matrix in it), or one llama.cpp's
            quantizer writes (`"q6_k"`, `"q5_k_m"`, `"q4_k_m"`, ... :
            `dtypes.DTYPES`): the model is written as float32 under a
            temporary name and quantized by `quantize_gguf` in a child
            process, with llama.cpp's mix of types and its fallback for
            matrices whose rows are not a multiple of 256 (32-wide types,
            e.g. `Q5_0` for `Q4_K`; float16 below 32). Defaults to
            `"float32"`.
        metadata_from: str, path-like or None. A GGUF file (usually the
            teacher's) whose tokenizer (`tokenizer.*`: vocabulary, merges or
            scores, token types, pre-tokenizer, special tokens, chat template)
            and context length the file copies verbatim. `None` derives the
            tokenizer from the model's preprocessor. Defaults to `None`.
        context_length: int or None. The context length llama.cpp is told;
            `None` takes `metadata_from`'s, else 8192. Defaults to `None`.
        name: str or None. `general.name`; `None` uses the backbone's name.
            Defaults to `None`.
        overwrite: bool. Replace an existing `path`. Defaults to `False`.
        description: str or None. `general.description` (e.g. how the model
            was trained and measured); `None` writes none. Defaults to `None`.

    Returns:
        `path`.

    Raises:
        GGUFError: an unsupported family or configuration (the message says
            what llama.cpp lacks), a model without a tokenizer and no
            `metadata_from`, a vocabulary that does not match the model's,
            `path` existing without `overwrite`, in a folder that does not
            exist, or the file the model was loaded from (`load_gguf`).
        ValueError: an unknown `dtype`.
        ImportError: a llama.cpp type without `llama-cpp-python` installed.
        RuntimeError: llama.cpp's quantizer failed (its message).
    """
    from keras_guide.adapters import backbone_of
    from keras_guide.gguf import quantize

    kind_of_file = dtypes_lib.get(dtype)
    quantize.check_available(dtype)
    path = os.fspath(path)
    if not path.endswith(".gguf"):
        raise GGUFError(f"A GGUF file's name ends in `.gguf`. Received: {path!r}")
    source = GGUFFile(metadata_from) if metadata_from is not None else None
    backbone = backbone_of(model)
    _check_target(path, source, model, backbone, overwrite)
    arch = architectures.of_backbone(backbone)
    config = backbone.get_config()
    config["tie_word_embeddings"] = bool(backbone.token_embedding.tie_weights)
    meta = _architecture_metadata(arch, config, source, context_length)
    tokenizer_meta = _tokenizer_metadata(model, source, config["vocabulary_size"])
    variables = {v.path: v for v in backbone.weights}

    def read(keras_path):
        return weight_values(variables[keras_path])

    tensors = arch.tensors(read, config, backbone)
    # llama.cpp quantizes from the float32 file.
    written = "float32" if kind_of_file.producer == "llama.cpp" else dtype

    def write(tmp):
        _write(
            tmp,
            arch.name,
            name or backbone.name,
            written,
            meta,
            tokenizer_meta,
            tensors,
            description,
        )

    if written != dtype:
        quantize.write_quantized(path, dtype, write)
    else:
        _files.write_atomic(path, write)
    return path


def _check_target(path, source, model, backbone, overwrite):
    """Refuses a `path` that is `metadata_from`, the model's own source file,
    in a missing folder, or existing without `overwrite`."""
    if source is not None and _same_file(source.path, path):
        raise GGUFError(
            f"`{path}` is `metadata_from` itself; write the student elsewhere."
        )
    _files.check_folder(path, GGUFError)
    origin = getattr(model, "_keras_guide_source", None) or getattr(
        backbone, "_keras_guide_source", None
    )
    if origin is not None and _same_file(origin, path):
        raise GGUFError(
            f"`{path}` is the file this model was loaded from; write it "
            "elsewhere (overwrite=True never replaces a model's own source, as "
            "the command line never replaces an input)."
        )
    if os.path.exists(path) and not overwrite:
        raise GGUFError(f"`{path}` exists; pass overwrite=True to replace it.")


def _architecture_metadata(arch, config, source, context_length):
    """The `<architecture>.*` keys of a backbone `config`, with the context
    length: `context_length`, else `source`'s, else 8192."""
    meta = {
        f"{arch.name}.{key}": value
        for key, value in arch.write_metadata(config).items()
    }
    meta[f"{arch.name}.context_length"] = int(
        context_length
        or (source and source.get(f"{arch.name}.context_length"))
        or _DEFAULT_CONTEXT
    )
    return meta


def _same_file(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def weight_values(variable, runtime="llama.cpp", error=GGUFError):
    """A Keras weight as a float32 NumPy array for a file `runtime` runs.

    Shared with `keras_guide.hf.writer`.

    Args:
        variable: a Keras variable.
        runtime: str. What runs the file, for the message. Defaults to
            `"llama.cpp"`.
        error: the exception class raised. Defaults to `GGUFError`.

    Raises:
        error: the weight holds NaN or Inf (naming it).
    """
    import keras

    value = keras.ops.convert_to_numpy(keras.ops.cast(variable.value, "float32"))
    if not np.all(np.isfinite(value)):
        raise error(
            f"Weight `{variable.path}` holds NaN or Inf; {runtime} would run a "
            "broken model. Was training diverging?"
        )
    return value


def check_float16_range(name, value, error=GGUFError):
    """Refuses a tensor written as float16 that float16 cannot hold.

    Shared with `keras_guide.hf.writer`.

    Raises:
        error: a value beyond float16's largest (naming the tensor and the
            dtypes that hold it).
    """
    scale = float(np.abs(value).max(initial=0.0))
    if scale > np.finfo(np.float16).max:
        raise error(
            f"Tensor `{name}` reaches {scale:.3g}, beyond float16's "
            f"{np.finfo(np.float16).max:.0f}: write it with dtype='float32' "
            "or 'bfloat16'."
        )


def tokenizer_metadata(
    model, source, vocabulary_size, carrier="a GGUF file", error=GGUFError
):
    """The `tokenizer.*` keys a file written for `model` carries.

    Shared with `keras_guide.hf.writer`, which writes them as Hugging Face
    tokenizer files.

    Args:
        model: a KerasHub task model (its `preprocessor.tokenizer`) or a
            backbone (then `source` is needed).
        source: a `GGUFFile` whose keys are taken (`metadata_from`), or None
            for the model's own tokenizer (`tokenizers.gguf_metadata`).
        vocabulary_size: int. Rows of the model's embedding table.
        carrier: str. What is written, for the messages. Defaults to
            `"a GGUF file"`.
        error: the exception class raised. Defaults to `GGUFError`.

    Returns:
        `{key: value}`.

    Raises:
        error: `model` has no tokenizer and `source` is None, or the
            tokenizer's token count is not the table's row count.
        GGUFError: a tokenizer class with no GGUF form.
    """
    if source is not None:
        found = len(source.require("tokenizer.ggml.tokens"))
        if found != vocabulary_size:
            raise error(
                f"`{source.path}` has {found} tokens but the model's table "
                f"{vocabulary_size} rows: it is not this model's tokenizer."
            )
        return {
            key: source.get(key)
            for key in source.keys()
            if key.startswith("tokenizer.")
        }
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None:
        raise error(
            f"{type(model).__name__} has no preprocessor with a tokenizer, which "
            f"{carrier} must carry: pass the task model (e.g. the CausalLM "
            "load_gguf returns, or build_student of it), or "
            "metadata_from='teacher.gguf'."
        )
    meta = tokenizers.gguf_metadata(
        tokenizer, add_bos=bool(getattr(preprocessor, "add_start_token", False))
    )
    found = len(meta["tokenizer.ggml.tokens"])
    if found != vocabulary_size:
        raise error(
            f"The model's tokenizer has {found} tokens but its table "
            f"{vocabulary_size} rows."
        )
    return meta


def _tokenizer_metadata(model, source, vocabulary_size):
    """`{key: (value, gguf value type or None)}` of the `tokenizer.*` keys:
    a key copied from `source` keeps its type."""
    meta = tokenizer_metadata(model, source, vocabulary_size)
    return {
        key: (value, None if source is None else source.value_types(key))
        for key, value in meta.items()
    }


def _tensor_type(gguf, name, value, dtype):
    """The GGML type a tensor is written in, and its data in that type.

    Vectors (norm gains) are always float32, as llama.cpp's converter writes
    them; a matrix whose rows do not split into whole blocks of `dtype` is
    written as float16 (as llama.cpp's converter falls back).
    """
    kinds = gguf.GGMLQuantizationType
    if value.ndim == 1 or dtype == "float32":
        return kinds.F32, value.astype(np.float32)
    kind_of_file = dtypes_lib.TYPES[dtype]
    kind = getattr(kinds, kind_of_file.tensor_type)
    if value.shape[-1] % kind_of_file.block:
        kind = kinds.F16
    if kind == kinds.F16:
        check_float16_range(name, value)
        return kind, value.astype(np.float16)
    return kind, gguf.quants.quantize(value.astype(np.float32), kind)


def _add_value(writer, gguf, key, value, types):
    if types is not None:
        kind = types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, list(value), kind, sub_type=types[-1])
        else:
            writer.add_key_value(key, value, kind)
    elif isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif value and isinstance(value[0], str):
        writer.add_array(key, value)
    elif value and isinstance(value[0], float):
        writer.add_key_value(
            key,
            list(value),
            gguf.GGUFValueType.ARRAY,
            sub_type=gguf.GGUFValueType.FLOAT32,
        )
    else:
        writer.add_key_value(
            key,
            [int(v) for v in value],
            gguf.GGUFValueType.ARRAY,
            sub_type=gguf.GGUFValueType.INT32,
        )


def _write(tmp, arch, name, dtype, meta, tokenizer_meta, tensors, description=None):
    gguf = _gguf()
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        writer.add_name(name)
        if description:
            writer.add_description(str(description))
        writer.add_file_type(
            int(getattr(gguf.LlamaFileType, dtypes_lib.TYPES[dtype].file_type))
        )
        if dtypes_lib.TYPES[dtype].quantized:
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for key, value in meta.items():
            _add_value(writer, gguf, key, value, None)
        for key, (value, types) in tokenizer_meta.items():
            _add_value(writer, gguf, key, value, types)
        for tensor_name, value, keras_path in tensors:
            kind, data = _tensor_type(gguf, tensor_name, value, dtype)
            plain = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
            writer.add_tensor(
                tensor_name, data, raw_dtype=None if kind in plain else kind
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
