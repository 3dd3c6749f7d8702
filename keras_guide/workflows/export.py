"""A model written where other runtimes open it: a llama.cpp GGUF file, a
KerasHub preset folder, a Hugging Face folder (`transformers`), or a `.keras`
file; each whole or not at all.

`export(model, base, formats)` writes `base.gguf`, `base_preset/`, `base_hf/`
and/or `base.keras` side by side; the CLI's `init`, `distill`, `compress` and
`export` commands call it.
"""

import os
import shutil

from keras_guide import _files
from keras_guide import _saving

FORMATS = ("gguf", "preset", "hf", "keras")
_SUFFIX = {"gguf": ".gguf", "preset": "_preset", "hf": "_hf", "keras": ".keras"}


def paths(base, formats):
    """`{format: path}` that `export(model, base, formats)` writes."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"Export formats are {FORMATS}. Received: {unknown}")
    return {kind: base + _SUFFIX[kind] for kind in formats}


def write_preset(model, folder, overwrite=False):
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
    tmp = _files.temporary_path(folder)
    old = tmp + "-old"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_to_preset(tmp)
        _saving.mark_preset(tmp)
        if os.path.exists(folder):
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    _files.fsync_dir(os.path.dirname(os.path.abspath(folder)))
    return folder


def export(model, base, formats, gguf_dtype="float32", metadata_from=None,
           overwrite=False):
    """Writes `model` in each of `formats` next to each other.

    Args:
        model: a KerasHub task model (its tokenizer goes with it).
        base: the path without extension: `base.gguf`, `base_preset/`,
            `base_hf/`, `base.keras`.
        formats: any of `FORMATS`.
        gguf_dtype: the GGUF file's tensor type (`keras_guide.save_gguf`).
        metadata_from: a GGUF file whose tokenizer and context length the
            GGUF file and the Hugging Face folder take (the teacher's, when
            it came as one).
        overwrite: replace what a previous export wrote.

    Returns:
        `{format: path}` written.
    """
    written = {}
    for kind, path in paths(base, formats).items():
        if kind == "gguf":
            from keras_guide.gguf import save_gguf

            save_gguf(model, path, dtype=gguf_dtype, metadata_from=metadata_from,
                      overwrite=overwrite)
        elif kind == "preset":
            write_preset(model, path, overwrite=overwrite)
        elif kind == "hf":
            from keras_guide.hf import save_hf

            save_hf(model, path, metadata_from=metadata_from, overwrite=overwrite)
        else:
            if os.path.exists(path) and not overwrite:
                raise ValueError(f"{path} exists; pass --overwrite to replace it.")
            _files.write_atomic(path, lambda tmp: _saving.save_keras(model, tmp))
        written[kind] = path
    return written
