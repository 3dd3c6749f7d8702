"""What the command line reads and writes, checked before anything runs.

Models by path or name (`load_model`), the tokenizer that encodes text for
them (`get_encoder`), text arguments (`text_paths`), calibration ids, and the
safety of output paths: an output is never an input, a previous run is not
replaced unless asked, a folder is writable before anything loads. The CLI
parses its arguments and calls these; they raise `InputError` (a
`ValueError`) with one line that says what was wrong and what to do.
"""

import atexit
import contextlib
import functools
import inspect
import json
import os
import shutil
import socket
import time

import numpy as np

from keras_guide.workflows import text


class InputError(ValueError):
    """An input or output argument that cannot be used, with what to do."""


# A run folder is owned by one process at a time: it holds this file, locked
# (`fcntl.flock`, released by the system when the process ends, however it
# ends) and naming the owner's process and host.
LOCK_FILE = ".keras-guide-run.lock"
# Real folder → (file descriptor, lock path) of the folders this process owns.
_OWNED = {}


def _owner(fd):
    """The owner a lock file names, `{}` when it names none."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return True
    return True


def _describe(owner):
    return (
        f"process {owner.get('pid', '?')} on {owner.get('host', '?')}, since "
        f"{owner.get('started', '?')}"
    )


def lock_run_folder(out):
    """Makes this process the one owner of the run folder `out` (created if
    missing) until `release_run_folder`, or until it ends.

    The lock is `out/.keras-guide-run.lock`, taken atomically with
    `fcntl.flock` (which the system releases when its process ends, even
    by SIGKILL) and holding the owner's pid, host and start time. A lock
    file left by a process of this host that is no longer running is taken
    over, with a line saying so.

    Returns:
        True if taken now, False if this process owned `out` already.

    Raises:
        InputError: another running process owns `out` (naming the folder,
            its pid and host), a process of another host named in the lock
            (whose liveness cannot be checked from here), or a folder where
            the lock file cannot be created.
    """
    import fcntl

    folder = real(out)
    if folder in _OWNED:
        return False
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise InputError(
                f"Cannot write to {out} ({error.strerror or error}): its run lock "
                f"{path} cannot be created. Pass a writable --out."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _owner(fd)
            os.close(fd)
            raise InputError(
                f"--out {out} is in use by another run ({_describe(owner)}): "
                "wait for it to end, or pass another --out (--overwrite never "
                "replaces a running run's files)."
            ) from None
        # Its owner may have removed the file between our open and lock.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    owner = _owner(fd)
    host = socket.gethostname()
    if owner.get("pid") is not None and owner.get("host") != host:
        os.close(fd)
        raise InputError(
            f"--out {out} names {_describe(owner)} as its run: this host cannot "
            f"tell whether it still runs. If it has ended, remove {path}."
        )
    if owner.get("pid") is not None and owner.get("pid") != os.getpid():
        state = (
            "which is no longer running"
            if not _alive(owner["pid"])
            else "which no longer holds it"
        )
        print(
            f"Taking over {out}: its lock names {_describe(owner)}, {state} "
            "(a run that crashed or was killed)."
        )
    record = {
        "pid": os.getpid(),
        "host": host,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    os.fsync(fd)
    _OWNED[folder] = (fd, path)
    return True


def release_run_folder(out):
    """Ends this process's ownership of `out` (a no-op if it has none): the
    lock file is removed, then unlocked."""
    fd, path = _OWNED.pop(real(out), (None, None))
    if fd is None:
        return
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.remove(path)
    except OSError:
        pass
    os.close(fd)


def release_run_folders(keep=()):
    """Releases every run folder this process owns but those in `keep`."""
    for folder in [f for f in _OWNED if f not in keep]:
        release_run_folder(folder)


atexit.register(release_run_folders)


@contextlib.contextmanager
def run_folder_scope():
    """Releases, on leaving, the run folders locked inside it (a command's)."""
    before = set(_OWNED)
    try:
        yield
    finally:
        release_run_folders(keep=before)


def owns_run_folder(argument):
    """Decorates a run function: the folder passed as `argument` is locked
    (`lock_run_folder`) for the call, and released after it unless the
    caller already owned it."""

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def run(*args, **kwargs):
            out = signature.bind(*args, **kwargs).arguments[argument]
            taken = lock_run_folder(out)
            try:
                return function(*args, **kwargs)
            finally:
                if taken:
                    release_run_folder(out)

        return run

    return decorate


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


def real(path):
    return os.path.realpath(os.path.abspath(path))


def inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_not_input(out, written, inputs):
    """Refuses an `--out` that is an input, or would write over one.

    Args:
        out: the `--out` argument.
        written: the paths the command writes.
        inputs: `{option: path}` of the models the command reads.
    """
    targets = [real(p) for p in written]
    for option, path in inputs.items():
        path = resolve_model(path)
        if path == "demo" or not os.path.exists(path):
            continue
        source = real(path)
        if any(inside(source, t) for t in targets) or any(
            inside(t, source) for t in targets + [real(out)]
        ):
            raise InputError(
                f"--out {out} would write over or into the input {option} {path}. "
                "Pass another --out (--overwrite never replaces an input)."
            )


def check_outputs(out, written, inputs, overwrite, out_is_file=False):
    """`_check_not_input`, then refuses a previous run's outputs unless
    `--overwrite`, then checks that the output folder (`out`, or the folder
    holding the file `out`) is writable."""
    check_not_input(out, written, inputs)
    if not out_is_file and os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file; pass a folder (created if missing).")
    existing = [p for p in written if os.path.exists(p)]
    if existing and not overwrite:
        raise InputError(
            f"--out {out} holds the output of a previous run "
            f"({', '.join(existing)}); pass --overwrite to replace it, or "
            "another --out."
        )
    check_writable(os.path.dirname(real(out)) if out_is_file else out)


def check_writable(out_dir):
    """Creates `out_dir` if needed and checks a file can be written there.

    Raises:
        ValueError: naming the folder and the system's reason.
    """
    probe = os.path.join(out_dir, f".keras_guide_write_test-{os.getpid()}")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
    except OSError as error:
        raise ValueError(
            f"Cannot write to {out_dir} ({error.strerror or error}). Pass a "
            f"writable --out. Received: out_dir={out_dir!r}"
        ) from None
    finally:
        # A probe created before a failed write (a full disk) goes too.
        if os.path.exists(probe):
            os.remove(probe)


def remove_outputs(paths):
    for path in paths:
        (shutil.rmtree if os.path.isdir(path) else os.remove)(path)


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


def check_run_folder(out, written, inputs, resume, overwrite):
    """`out` may take a run's outputs `written`: it holds none of `inputs`
    (`{option: [paths]}`), is a writable folder that no other running
    process owns (this one then owns it: `lock_run_folder`), and a previous
    run in it is continued (`resume`) or replaced (`overwrite`, whose old
    outputs are then removed) only when asked.

    Returns:
        The previous run's outputs found in `out` (before any removal).
    """
    folder = real(out)
    for option, paths in inputs.items():
        for path in paths:
            check_not_input(out, written, {option: path})
            if os.path.exists(path) and inside(real(path), folder):
                raise InputError(
                    f"--out {out} holds the input {option} {path}: pass a "
                    "folder of its own for the run's outputs."
                )
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file; pass a folder.")
    if os.path.isdir(out):
        # A running run's folder is refused as such, before its files count
        # as a previous run's.
        lock_run_folder(out)
    previous = [p for p in written if os.path.exists(p)]
    if resume and overwrite:
        raise InputError("--resume continues a run, --overwrite replaces it: pass one.")
    if resume and not previous:
        raise InputError(f"--resume: {out} holds no run to continue.")
    if previous and not (resume or overwrite):
        raise InputError(
            f"--out {out} holds a previous run ({', '.join(previous)}); pass "
            "--resume to continue it, --overwrite to replace it, or another --out."
        )
    check_writable(out)
    lock_run_folder(out)
    if overwrite:
        remove_outputs(previous)
    return previous
