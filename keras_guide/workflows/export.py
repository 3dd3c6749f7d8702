"""A model written where other runtimes open it: a llama.cpp GGUF file, a
KerasHub preset folder, a Hugging Face folder (`transformers`), or a `.keras`
file; each whole or not at all.

`export(model, base, formats)` writes `base.gguf`, `base_preset/`, `base_hf/`
and/or `base.keras` side by side; the CLI's `init`, `distill`, `compress` and
`export` commands call it. Several GGUF types give one file each: the first
`base.gguf`, the others `base.<type>.gguf` (`paths`).
"""

import os

from keras_guide import _files
from keras_guide import _saving
from keras_guide.workflows import run

FORMATS = ("gguf", "preset", "hf", "keras")
_SUFFIX = {"gguf": ".gguf", "preset": "_preset", "hf": "_hf", "keras": ".keras"}


def gguf_dtypes(gguf_dtype):
    """The GGUF types asked for, as a checked list (one name or several).

    Raises:
        ValueError: an unknown type, a type named twice, or none.
    """
    from keras_guide.gguf import dtypes

    names = [gguf_dtype] if isinstance(gguf_dtype, str) else list(gguf_dtype)
    unknown = [n for n in names if n not in dtypes.TYPES]
    if unknown or not names:
        raise ValueError(
            f"GGUF types are {', '.join(dtypes.DTYPES)}. Received: "
            f"gguf_dtype={gguf_dtype!r}"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"GGUF types {twice} are named twice; each type is one file. "
            f"Received: gguf_dtype={gguf_dtype!r}"
        )
    return names


def paths(base, formats, gguf_dtype="float32"):
    """`{format: path}` that `export(model, base, formats, gguf_dtype)`
    writes: `"gguf"` is the first GGUF type's `base.gguf`, and each further
    type `t` is `"gguf.t"`: `base.t.gguf`."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"Export formats are {FORMATS}. Received: {unknown}")
    out = {}
    for kind in formats:
        out[kind] = base + _SUFFIX[kind]
        if kind == "gguf":
            for dtype in gguf_dtypes(gguf_dtype)[1:]:
                out[f"gguf.{dtype}"] = f"{base}.{dtype}.gguf"
    return out


def write_preset(model, folder, overwrite=False, description=None):
    """`model.save_to_preset(folder)`, whole or not at all.

    The preset is written into a temporary folder beside `folder` and renamed
    into place; an existing `folder` is replaced only with `overwrite`, and
    only once the new one is complete. A preset that names keras_guide's
    classes (a GGUF vocabulary's tokenizer) says so in its `metadata.json`.

    Raises:
        ValueError: `folder` exists and `overwrite` is false, or `model`
            cannot be saved as a preset (not a KerasHub model).
    """
    if not hasattr(model, "save_to_preset"):
        raise ValueError(
            f"A {type(model).__name__} has no `save_to_preset`: a KerasHub preset "
            "needs a KerasHub backbone or task model."
        )
    if os.path.exists(folder) and not overwrite:
        raise ValueError(f"{folder} exists; pass --overwrite to replace it.")

    def write(tmp):
        model.save_to_preset(tmp)
        _saving.mark_preset(tmp, description)

    _files.write_folder_atomic(folder, write)
    return folder


def export(
    model,
    base,
    formats,
    gguf_dtype="float32",
    metadata_from=None,
    overwrite=False,
    description=None,
):
    """Writes `model` in each of `formats` next to each other.

    Args:
        model: a KerasHub task model (its tokenizer goes with it).
        base: the path without extension: `base.gguf`, `base_preset/`,
            `base_hf/`, `base.keras`.
        formats: any of `FORMATS`.
        gguf_dtype: the GGUF file's type (`keras_guide.save_gguf`), or a list
            of types, one file each: the first `base.gguf`, the others
            `base.<type>.gguf`. The model is written as float32 once and
            each llama.cpp type quantized from that file.
        metadata_from: a GGUF file whose tokenizer and context length the
            GGUF file and the Hugging Face folder take (the teacher's, when
            it came as one).
        overwrite: replace what a previous export wrote.
        description: how the model was made (the GGUF files'
            `general.description`, the preset's `metadata.json`). Defaults to
            None.

    Returns:
        `{format: path}` written (`paths`): `"gguf"` for the first GGUF type,
        `"gguf.<type>"` for each other.

    Raises:
        ValueError: an unknown format or GGUF type, a path that exists
            without `overwrite`, or a folder that cannot be written
            (`run.check_run_folder`).
        ImportError: a llama.cpp type without `llama-cpp-python`.
        Each before anything is written.
    """
    targets = paths(base, formats, gguf_dtype)
    names = gguf_dtypes(gguf_dtype)
    if "gguf" in formats:
        from keras_guide.gguf import quantize

        for dtype in names:
            quantize.check_available(dtype)
    run.check_run_folder(
        base,
        list(targets.values()),
        resume=None,
        overwrite=overwrite,
        out_is_file=True,
    )
    written = {}
    for kind in dict.fromkeys(formats):
        path = targets[kind]
        if kind == "gguf":
            files = {
                d: targets["gguf" if i == 0 else f"gguf.{d}"]
                for i, d in enumerate(names)
            }
            _write_ggufs(model, files, metadata_from, overwrite, description)
            written.update(
                {
                    k: v
                    for k, v in targets.items()
                    if k == "gguf" or k.startswith("gguf.")
                }
            )
            continue
        if kind == "preset":
            write_preset(model, path, overwrite=overwrite, description=description)
        elif kind == "hf":
            from keras_guide.hf import save_hf

            save_hf(model, path, metadata_from=metadata_from, overwrite=overwrite)
        else:
            _files.write_atomic(path, lambda tmp: _saving.save_keras(model, tmp))
        written[kind] = path
    return written


def _write_ggufs(model, files, metadata_from, overwrite, description=None):
    """Writes `{dtype: path}`: the `gguf` package's types from the model,
    llama.cpp's from one float32 file (the float32 export itself if asked
    for, else a temporary one)."""
    from keras_guide.gguf import dtypes
    from keras_guide.gguf import quantize
    from keras_guide.gguf import save_gguf

    by_llama_cpp = [d for d in files if dtypes.TYPES[d].producer == "llama.cpp"]
    for dtype, path in files.items():
        if dtype not in by_llama_cpp:
            save_gguf(
                model,
                path,
                dtype=dtype,
                metadata_from=metadata_from,
                overwrite=overwrite,
                description=description,
            )
    if not by_llama_cpp:
        return
    source = files.get("float32")
    temporary = source is None
    if temporary:
        first = files[by_llama_cpp[0]]
        folder, name = os.path.split(os.path.abspath(first))
        source = _files.temporary_path(os.path.join(folder, "float32-" + name))
        save_gguf(
            model,
            source,
            metadata_from=metadata_from,
            overwrite=True,
            description=description,
        )
    try:
        for dtype in by_llama_cpp:
            quantize.quantize_gguf(source, files[dtype], dtype, overwrite=overwrite)
    finally:
        if temporary and os.path.exists(source):
            os.remove(source)
