"""What the command line reads, checked before anything runs.

Models by path or name (`load_model`), the tokenizer that encodes text for
them (`get_encoder`), text arguments (`text_paths`), calibration ids and
held-out text; what it writes is checked by `workflows.run.folder`. The
CLI parses its arguments and calls these; they raise `InputError` (a
`ValueError`) with one line that says what was wrong and what to do.
"""

import os

import numpy as np

from keras_guide.workflows import text
from keras_guide.workflows.run import folder as run_folder
from keras_guide.workflows.run.folder import InputError
from keras_guide.workflows.run.folder import real

# `run_folder_scope` lived here: cli.py imports it from here until it imports
# `keras_guide.workflows.run`.
from keras_guide.workflows.run.folder import run_folder_scope  # noqa: F401


def resolve_model(path):
    """A model argument as a path: the file of a packaged checkpoint name
    (`keras_guide.checkpoints.NAMES`, e.g. `smollm2`), else `path`."""
    from keras_guide import checkpoints

    if path in checkpoints.NAMES and not os.path.exists(path):
        return checkpoints.path(path)
    return path


def load_model(path):
    """Loads a teacher or student: a packaged checkpoint's name (`smollm2`,
    `gemma3`), a `.keras` file, a llama.cpp `.gguf` checkpoint (with its own
    tokenizer), a KerasHub preset folder or a Hugging Face checkpoint folder
    (`config.json` and safetensors, read by KerasHub's converter:
    `keras_guide.hf.load_hf`).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is none of those (a `GGUFError` names what a
            `.gguf` file lacks).
    """
    path = resolve_model(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model at {path!r}.")
    import keras
    import keras_hub

    if os.path.isfile(path):
        if path.endswith(".gguf"):
            from keras_guide.gguf import load_gguf

            return load_gguf(path)
        if not path.endswith(".keras"):
            raise ValueError(
                "A model file must be a `.keras` archive (model.save(...)) or a "
                f"llama.cpp `.gguf` checkpoint. Received: {path!r}"
            )
        import zipfile

        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"{path} is not a complete .keras archive (a .keras file is a zip "
                "archive; this one is torn, truncated or something else). Pass a "
                "file written by `model.save(...)`."
            )
        try:
            return keras.saving.load_model(path)
        except Exception as error:  # noqa: BLE001 (any reason: say which file)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(
                f"Cannot load {path} as a Keras model ({type(error).__name__}: "
                f"{reason}). Pass a `.keras` file written by `model.save(...)`."
            ) from error
    if not os.path.exists(os.path.join(path, "config.json")):
        raise ValueError(
            f"{path!r} is a folder without config.json: not a KerasHub preset. Pass "
            "a `.keras` file or a preset folder (`model.save_to_preset(folder)`)."
        )
    from keras_guide.hf import reader

    if reader.is_hf_folder(path):
        return reader.load_hf(path)
    try:
        return keras_hub.models.CausalLM.from_preset(path)
    except Exception:  # noqa: BLE001 (a preset without a task: load the backbone)
        return keras_hub.models.Backbone.from_preset(path)


def get_encoder(tokenizer, teacher=None):
    """An encoder (`encode(text)`, `end_token_id`) for `tokenizer`.

    Args:
        tokenizer: `"auto"` (the teacher's preprocessor's tokenizer; `None`
            when it has none) or a folder with `vocabulary.json` and
            `merges.txt` (a byte-level BPE, `keras_guide.bpe`).
        teacher: the teacher model, for `"auto"`.
    """
    from keras_guide import bpe

    if tokenizer == "auto":
        return text.model_encoder(teacher)
    if os.path.isdir(tokenizer):
        return bpe.load_encoder(tokenizer)
    raise InputError(
        "`tokenizer` must be 'auto', 'demo' or a folder with vocabulary.json and "
        f"merges.txt. Received: tokenizer={tokenizer!r}"
    )


def check_exist(paths):
    for option, path in paths.items():
        path = resolve_model(path)
        if path != "demo" and not os.path.exists(path):
            raise InputError(f"{option} {path}: no such file or folder.")


def calibration_ids(paths, encoder, tokens):
    """The first `tokens` tokens of the text in `paths`, as windows of 256 in
    the encoder's tokens (each opening with the start token when the
    tokenizer adds one), reading no more text than the tokens need."""
    ids = []
    files = [name for path in paths for name in text.text_files(path)]
    for name in files:
        # No more text than the tokens asked for need (a token is rarely
        # more than 16 characters), read again whole only if it falls short.
        wanted = tokens - len(ids)
        part = text.read_text(name, max_chars=16 * wanted)
        encoded = encoder.encode(part)
        if len(encoded) < wanted and len(part) == 16 * wanted:
            encoded = encoder.encode(text.read_text(name))
        ids += encoded
        if len(ids) >= tokens:
            break
    ids = np.asarray(ids[:tokens], dtype=np.int32)
    start = text.start_token_id(encoder)
    width = min(256 if start is None else 255, max(len(ids), 1))
    windows = ids[: len(ids) // width * width].reshape(-1, width)
    if start is not None:
        windows = np.pad(windows, ((0, 0), (1, 0)), constant_values=start)
    return windows


def check_not_input(out, written, inputs):
    """`run.check_not_input` for arguments that may name a model: a packaged
    checkpoint's name is checked as its file (`resolve_model`).

    Args:
        out: str. The `--out` argument.
        written: list of str. The paths the command writes.
        inputs: dict. `{option: path or name}` of the models the command reads.
    """
    run_folder.check_not_input(
        out, written, {option: resolve_model(path) for option, path in inputs.items()}
    )


def check_run_folder(out, written, inputs, resume, overwrite):
    """`run.check_run_folder`, then a replaced run's outputs removed (the
    command line's until it calls `keras_guide.workflows.run` itself).

    Returns:
        The previous run's outputs found in `out` (before any removal).
    """
    previous = run_folder.check_run_folder(out, written, inputs, resume, overwrite)
    if overwrite:
        run_folder.remove_outputs(previous)
    return previous


def check_outputs(out, written, inputs, overwrite, out_is_file=False):
    """`run.check_run_folder` for a command that cannot resume: `check_not_input`,
    then a previous run's outputs refused unless `overwrite`, then the
    output folder (`out`, or the folder holding the file `out`) writable."""
    check_not_input(out, written, inputs)
    run_folder.check_run_folder(
        out,
        written,
        resume=None,
        overwrite=overwrite,
        out_is_file=out_is_file,
    )


def check_held_out(windows, given=True):
    """Refuses held-out windows too short to measure a model on: fewer
    tokens to predict than one window holds.

    Args:
        windows: `(tokens, mask)` held-out windows (`text.text_windows`).
        given: whether the held-out text was given (`--eval`) or held back
            from `--text`, for the message.

    Raises:
        InputError: with the count and what is needed.
    """
    tokens, mask = windows
    length = int(tokens.shape[1]) - 1 if np.ndim(tokens) == 2 else 0
    # Each window predicts every real token after its first.
    count = int(np.maximum(np.asarray(mask).sum(-1) - 1, 0).sum()) if length else 0
    if count < max(length, 1):
        source = (
            "--eval"
            if given
            else "the held-out share of --text (every tenth file, or the last "
            "tenth of each)"
        )
        raise InputError(
            f"{source} holds {count} tokens to predict; measuring loss, KL and "
            f"agreement needs at least {max(length, 1)} (one window of "
            f"--sequence-length {length}). Pass more held-out text."
        )


def check_texts(train, held_out):
    """Text arguments exist, and the held-out text shares no file with the
    training text (`--text`, `--eval`: lists of files or folders)."""
    for option, paths in (("--text", train), ("--eval", held_out)):
        for path in paths:
            if not os.path.exists(path):
                raise InputError(f"{option} {path}: no such file or folder.")
    train_files = {real(f) for p in train for f in text.text_files(p)}
    eval_files = {real(f) for p in held_out for f in text.text_files(p)}
    if train_files & eval_files:
        raise InputError(
            "--eval and --text share "
            f"{', '.join(sorted(train_files & eval_files))}: evaluation text must be "
            "text training never sees."
        )
