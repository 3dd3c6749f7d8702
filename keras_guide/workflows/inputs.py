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

# Names a model, tokenizer or text argument takes besides a path, registered
# by the package that provides them (`keras_guide.demo`: "demo",
# "shakespeare:train", ...), as `keras.saving.register_keras_serializable`
# registers classes: the resolver below special-cases no name.
_MODELS = {}
_ENCODERS = {}
_TEXTS = {}
# The encoder `"auto"` gives a teacher without a tokenizer of its own.
_AUTO_ENCODER = {}


def _check_entry(function, name, value):
    """A registration's name is a non-empty string and its value callable."""
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"`{function}` takes a non-empty string name. Received: name={name!r}"
        )
    if not callable(value):
        raise TypeError(
            f"`{function}` takes a callable of no argument for {name!r}. "
            f"Received: {type(value).__name__}"
        )


def register_model(name, loader):
    """Makes `name` a model argument: `load_model(name)` returns `loader()`.

    Args:
        name: str. The name; it wins over a file or folder of that name.
        loader: callable. Takes no argument and returns the Keras model.
    """
    _check_entry("register_model", name, loader)
    _MODELS[name] = loader


def register_encoder(name, factory, auto=False):
    """Makes `name` a tokenizer argument: `get_encoder(name)` returns
    `factory()`.

    Args:
        name: str. The name; it wins over a folder of that name.
        factory: callable. Takes no argument and returns an encoder
            (`encode(text)`, `end_token_id`).
        auto: bool. Whether `"auto"` gives this encoder for a teacher whose
            preprocessor has no tokenizer. Defaults to `False`.
    """
    _check_entry("register_encoder", name, factory)
    _ENCODERS[name] = factory
    if auto:
        _AUTO_ENCODER["factory"] = factory


def register_text(name, paths):
    """Makes `name` a text argument: `text_paths([name])` gives `paths()`.

    Args:
        name: str. The name, `FAMILY:PART` (e.g. `shakespeare:train`); another
            part of a registered family is refused with the family's names.
        paths: callable. Takes no argument and returns the text files.
    """
    _check_entry("register_text", name, paths)
    _TEXTS[name] = paths


def model_names():
    """The names a model argument takes besides a path: the packaged
    checkpoints (`keras_guide.checkpoints.NAMES`) and the registered ones."""
    from keras_guide import checkpoints

    return sorted({*checkpoints.NAMES, *_MODELS})


def resolve_model(path):
    """A model argument as a path: the file of a packaged checkpoint name
    (`keras_guide.checkpoints.NAMES`, e.g. `smollm2`), else `path` (a
    registered name stays a name)."""
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

    A registered name (`register_model`) gives its loader's model.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is none of those (a `GGUFError` names what a
            `.gguf` file lacks).
    """
    if path in _MODELS:
        return _MODELS[path]()
    path = resolve_model(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No model at {path!r}: pass a model file or folder, or one of "
            f"{', '.join(model_names())}."
        )
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
        tokenizer: str. `"auto"` (the teacher's preprocessor's tokenizer,
            else the encoder registered for `"auto"`, else `None`), a
            registered name (`register_encoder`) or a folder with
            `vocabulary.json` and `merges.txt` (a byte-level BPE,
            `keras_guide.bpe`).
        teacher: Keras model or `None`. The teacher, for `"auto"`. Defaults
            to `None`.

    Raises:
        InputError: `tokenizer` is none of those, naming the accepted names.
    """
    from keras_guide import bpe

    if tokenizer in _ENCODERS:
        return _ENCODERS[tokenizer]()
    if tokenizer == "auto":
        encoder = text.model_encoder(teacher)
        if encoder is None and _AUTO_ENCODER:
            return _AUTO_ENCODER["factory"]()
        return encoder
    if os.path.isdir(tokenizer):
        return bpe.load_encoder(tokenizer)
    names = ", ".join(repr(name) for name in ["auto", *sorted(_ENCODERS)])
    raise InputError(
        f"`tokenizer` must be {names} or a folder with vocabulary.json and "
        f"merges.txt. Received: tokenizer={tokenizer!r}"
    )


def load_windows(
    paths, teacher, student=None, tokenizer="auto", sequence_length=None, held_out=None
):
    """The training and held-out windows of text in `tokenizer`'s tokens
    (`text.text_windows`), as long as the student (else the teacher) allows.

    Args:
        paths: list of str. Text files or folders.
        teacher: Keras model. The teacher, whose vocabulary the tokens fit.
        student: Keras model or `None`. The student, whose vocabulary and
            context the windows fit too. Defaults to `None`.
        tokenizer: str. As `get_encoder` takes it. Defaults to `"auto"`.
        sequence_length: int or `None`. Tokens per window; `None` takes the
            model's context, at most 128. Defaults to `None`.
        held_out: list of str or `None`. Held-out files or folders; `None`
            holds back part of `paths`. Defaults to `None`.

    Raises:
        ValueError: the tokenizer's vocabulary exceeds a model's, or
            `sequence_length` its context.
    """
    encoder = get_encoder(tokenizer, teacher)
    text.check_vocabulary(encoder, teacher, "teacher")
    if student is not None:
        text.check_vocabulary(encoder, student, "student")
    model = teacher if student is None else student
    length = text.sequence_length(model, sequence_length)
    return text.text_windows(paths, encoder, length, held_out)


def check_exist(paths):
    """Refuses a model argument that names nothing: no file or folder, no
    packaged checkpoint, no registered name.

    Args:
        paths: dict. `{option: model argument}`, the option for the message.

    Raises:
        InputError: naming the option, the path and the names accepted.
    """
    for option, path in paths.items():
        path = resolve_model(path)
        if path not in _MODELS and not os.path.exists(path):
            raise InputError(
                f"{option} {path}: no such file or folder. Pass a .keras file, a "
                f".gguf file, a KerasHub preset folder or one of "
                f"{', '.join(model_names())}."
            )


def text_paths(paths):
    """Text arguments as files and folders: a registered name
    (`register_text`, e.g. `shakespeare:train`) gives its files, anything
    else is kept.

    Args:
        paths: list of str. Text arguments.

    Returns:
        list of str. The files and folders they name.

    Raises:
        InputError: an unregistered part of a registered family
            (`shakespeare:tests`), naming the family's names.
    """
    out = []
    for path in paths:
        if path in _TEXTS:
            out += _TEXTS[path]()
            continue
        family = path.partition(":")[0] + ":"
        names = sorted(name for name in _TEXTS if name.startswith(family))
        if ":" in path and names and not os.path.exists(path):
            raise InputError(
                f"{path}: no text of that name; the named texts are "
                f"{', '.join(names)}. Received: {path!r}"
            )
        out.append(path)
    return out


def resolve_texts(texts):
    """Text arguments as existing files and folders (`text_paths`).

    Args:
        texts: dict. `{option: list of text arguments, or None}`, the option
            for the message.

    Returns:
        dict. The same options, each list resolved (`None` kept).

    Raises:
        InputError: a path that does not exist, naming its option and the
            registered text names.
    """
    names = "".join(f", {name}" for name in sorted(_TEXTS))
    resolved = {}
    for option, paths in texts.items():
        resolved[option] = None if paths is None else text_paths(paths)
        for path in resolved[option] or []:
            if not os.path.exists(path):
                raise InputError(
                    f"{option} {path}: no such file or folder. Pass text files, "
                    f"folders holding them{names}."
                )
    return resolved


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
