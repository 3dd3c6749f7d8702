"""`save_hf`: a KerasHub Llama or Gemma 3 model as a Hugging Face folder.

The folder holds what `transformers.AutoModelForCausalLM.from_pretrained`
and `AutoTokenizer.from_pretrained` read: `config.json`, `model.safetensors`,
`generation_config.json`, `tokenizer.json` and `tokenizer_config.json` (the
special tokens, whether the start token is added, the chat template). The
tokenizer is llama.cpp's description of the vocabulary (the GGUF file the
model came from, or the one `save_gguf` would write for the model's own
tokenizer) in the `tokenizers` library's terms (`keras_guide.hf.tokenizer`),
so `transformers` gives the ids llama.cpp gives.
"""

import json
import os
import struct

import numpy as np

from keras_guide import _files
from keras_guide.hf import gemma3
from keras_guide.hf import llama
from keras_guide.hf import tokenizer as hf_tokenizer

# KerasHub backbone class → (GGUF architecture, module).
FAMILIES = {
    "LlamaBackbone": ("llama", llama),
    "Llama3Backbone": ("llama", llama),
    "Gemma3Backbone": ("gemma3", gemma3),
}
DTYPES = ("float32", "float16", "bfloat16")
_SAFETENSORS_TYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
_DEFAULT_CONTEXT = 8192
FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)


def save_hf(
    model,
    folder,
    *,
    metadata_from=None,
    overwrite=False,
    dtype="float32",
    context_length=None,
):
    """Writes a KerasHub Llama or Gemma 3 model as a Hugging Face folder.

    Everything is checked and the configuration and tokenizer files built
    before anything is written; the folder is written under a temporary name
    beside `folder` and renamed into place when complete, so `folder` never
    holds half a checkpoint.

    Args:
        model: a KerasHub `CausalLM` (with a preprocessor, whose tokenizer is
            written) or a backbone (then pass `metadata_from`). Supported:
            `LlamaBackbone`/`Llama3Backbone` (`LlamaForCausalLM`, which also
            runs SmolLM/SmolLM2) and the text-only `Gemma3Backbone`
            (`Gemma3ForCausalLM`), of any size `build_student` makes.
        folder: str or path-like. The folder to write.
        metadata_from: str, path-like or None. A GGUF file (usually the
            teacher's) whose tokenizer (vocabulary, merges or scores, token
            types, pre-tokenizer, special tokens, chat template) and context
            length the folder takes. `None` takes the model's own tokenizer.
            Defaults to `None`.
        overwrite: bool. Replace an existing `folder` (once the new one is
            complete). Defaults to `False`.
        dtype: str. The weights' type in `model.safetensors`: `"float32"`,
            `"float16"` or `"bfloat16"`. Defaults to `"float32"`.
        context_length: int or None. `max_position_embeddings` and the
            tokenizer's `model_max_length`; `None` takes `metadata_from`'s,
            else 8192. Defaults to `None`.

    Returns:
        `folder`.

    Raises:
        ValueError: `folder` exists without `overwrite`, an unsupported family
            or configuration (the message says what `transformers` lacks), a
            model without a tokenizer and no `metadata_from`, a vocabulary
            the tokenizer files cannot express or that is not the model's, an
            unknown `dtype`, or a weight that is NaN, infinite or out of the
            range of `dtype`.
    """
    from keras_guide.adapters import backbone_of
    from keras_guide.gguf import writer as gguf_writer

    folder = _check_target(folder, overwrite, dtype)
    backbone = backbone_of(model)
    arch, family = _family(backbone)
    documents = _documents(
        model, backbone, arch, family, metadata_from, context_length, dtype
    )
    variables = {v.path: v for v in backbone.weights}

    def read(path):
        return gguf_writer.weight_values(variables[path], "transformers", ValueError)

    _write_folder(
        folder,
        documents,
        lambda path: _write_safetensors(path, family.tensors(read, backbone), dtype),
    )
    return folder


def _check_target(folder, overwrite, dtype):
    """`folder` as a string, once it and `dtype` are checked.

    Raises:
        ValueError: an unknown `dtype`, `folder` exists without `overwrite`,
            or it is a file.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}. Received: dtype={dtype!r}")
    folder = os.fspath(folder)
    if os.path.exists(folder) and not overwrite:
        raise ValueError(f"`{folder}` exists; pass overwrite=True to replace it.")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(
            f"`{folder}` is a file; a Hugging Face checkpoint is a folder."
        )
    return folder


def _family(backbone):
    """`(GGUF architecture, module)` of the backbone's family (`FAMILIES`).

    Raises:
        ValueError: a backbone class `save_hf` does not write.
    """
    kind = type(backbone).__name__
    if kind not in FAMILIES:
        raise ValueError(
            f"save_hf writes {sorted(FAMILIES)} (transformers' LlamaForCausalLM "
            f"and Gemma3ForCausalLM); this model is a {kind}. Save it with "
            "`model.save_to_preset(folder)` instead."
        )
    return FAMILIES[kind]


def _documents(model, backbone, arch, family, metadata_from, context_length, dtype):
    """The folder's JSON files: `{file name: document}` for `config.json`,
    `generation_config.json`, `tokenizer.json` and `tokenizer_config.json`
    (`save_hf`'s arguments)."""
    from keras_guide.gguf import writer as gguf_writer

    source = None
    if metadata_from is not None:
        from keras_guide.gguf.reader import GGUFFile

        source = GGUFFile(metadata_from)
    # The tokenizer save_gguf would write, as its tokenizer.* keys.
    meta = gguf_writer.tokenizer_metadata(
        model,
        source,
        backbone.vocabulary_size,
        carrier="a Hugging Face folder",
        error=ValueError,
    )
    context = int(
        context_length
        or (source is not None and source.get(f"{arch}.context_length"))
        or _DEFAULT_CONTEXT
    )
    config = family.config(backbone, context)
    tokenizer_json, tokenizer_config, ids = hf_tokenizer.files(meta, context)
    stops = ids["stop_token_ids"]
    token_ids = {
        "bos_token_id": ids["bos_token_id"],
        "eos_token_id": stops[0] if len(stops) == 1 else (stops or None),
        "pad_token_id": ids["pad_token_id"],
    }
    config.update(token_ids, dtype=dtype)
    generation = {**token_ids, "do_sample": False}
    return {
        "config.json": config,
        "generation_config.json": generation,
        "tokenizer.json": tokenizer_json,
        "tokenizer_config.json": tokenizer_config,
    }


def _encode(name, value, dtype):
    """`value` (float32) as the bytes of `dtype`, little-endian."""
    value = np.ascontiguousarray(value, dtype=np.float32)
    if dtype == "float32":
        return value.astype("<f4").tobytes()
    if dtype == "float16":
        from keras_guide.gguf import writer as gguf_writer

        gguf_writer.check_float16_range(name, value, ValueError)
        return value.astype("<f2").tobytes()
    # bfloat16: the upper half of float32, rounded to nearest even.
    bits = value.view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def _write_safetensors(path, tensors, dtype):
    """`tensors` (`(name, float32 array)` pairs) as a safetensors file.

    The format: an 8-byte little-endian header length, the JSON header
    (`{name: {dtype, shape, data_offsets}}`, offsets into the data that
    follows), then each tensor's bytes, row-major.
    """
    blobs, header, offset = [], {"__metadata__": {"format": "pt"}}, 0
    for name, value in tensors:
        data = _encode(name, value, dtype)
        header[name] = {
            "dtype": _SAFETENSORS_TYPES[dtype],
            "shape": [int(n) for n in value.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for data in blobs:
            f.write(data)


def _write_folder(folder, documents, write_weights):
    """The JSON `documents` and the weights in a temporary folder beside
    `folder`, renamed into place once complete (`_files.write_folder_atomic`:
    an old `folder` is removed only then)."""

    def write(tmp):
        os.makedirs(tmp)
        for name, document in documents.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                # tokenizer.json (half a million merges for Gemma) on one line.
                indent = None if name == "tokenizer.json" else 2
                json.dump(document, f, indent=indent, ensure_ascii=False)
                f.write("\n")
        write_weights(os.path.join(tmp, "model.safetensors"))

    _files.write_folder_atomic(folder, write)
