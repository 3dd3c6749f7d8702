"""The run folder: one process owns it, it holds no input, and a previous run
in it is continued or replaced only when asked.

`check_run_folder` is the one check of a run's `--out` (distill, compress,
the ablation's commands, export): an output is never an input, the folder is
writable before anything loads, a folder another running process owns is
refused (`lock_run_folder`), and a previous run's outputs are refused unless
`resume` continues them or `overwrite` replaces them. Its refusals are
`InputError`s (a `ValueError`) of one line that says what to do.
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


def real(path):
    """`path` absolute, with every link resolved."""
    return os.path.realpath(os.path.abspath(path))


def inside(path, folder):
    """Whether the real path `path` is `folder` or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def folder_outputs(out, names):
    """The paths of the files `names` in the run folder `out`."""
    return [os.path.join(out, name) for name in names]


def _paths(inputs):
    """`(option, path)` for each path of `{option: path or [paths]}`."""
    for option, paths in (inputs or {}).items():
        for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            yield option, os.fspath(path)


def check_not_input(out, written, inputs):
    """Refuses an `--out` that is an input, or would write over one.

    Args:
        out: str. The `--out` argument.
        written: list of str. The paths the command writes.
        inputs: dict. `{option: path or [paths]}` of what the command reads,
            as paths (a name that is not a path, such as `"demo"`, is
            skipped: resolve a packaged model's name to its file first).

    Raises:
        InputError: naming `--out` and the input.
    """
    targets = [real(p) for p in written]
    for option, path in _paths(inputs):
        if not os.path.exists(path):
            continue
        source = real(path)
        if any(inside(source, t) for t in targets) or any(
            inside(t, source) for t in targets + [real(out)]
        ):
            raise InputError(
                f"--out {out} would write over or into the input {option} {path}. "
                "Pass another --out (--overwrite never replaces an input)."
            )


def _check_inputs(out, written, inputs):
    """`check_not_input`, and a run folder `out` holds none of `inputs`."""
    folder = real(out)
    for option, path in _paths(inputs):
        check_not_input(out, written, {option: path})
        if os.path.exists(path) and inside(real(path), folder):
            raise InputError(
                f"--out {out} holds the input {option} {path}: pass a "
                "folder of its own for the run's outputs."
            )


def _check_previous(out, previous, resume, overwrite, resumable):
    """Refuses a previous run that is neither continued nor replaced, and a
    `resume` with nothing to continue."""
    if resume:
        if resumable is not None:
            resumable(out)
        if not previous:
            raise InputError(f"--resume: {out} holds no run to continue.")
    elif previous and not overwrite:
        if resume is None:
            raise InputError(
                f"--out {out} holds the output of a previous run "
                f"({', '.join(previous)}); pass --overwrite to replace it, or "
                "another --out."
            )
        raise InputError(
            f"--out {out} holds a previous run ({', '.join(previous)}); pass "
            "--resume to continue it, --overwrite to replace it, or another --out."
        )


def check_run_folder(
    out,
    written,
    inputs=None,
    resume=False,
    overwrite=False,
    out_is_file=False,
    resumable=None,
):
    """Checks that `out` may take a run's outputs `written`, before anything
    loads; this process then owns the folder (`lock_run_folder`).

    In order: `resume` and `overwrite` are not both set; `out` writes over
    none of `inputs` and, as a folder, holds none of them; it is a folder
    (or, with `out_is_file`, a file in a folder); no other running process
    owns it (a running run's folder is refused as such, before its files
    count as a previous run's); a previous run in it is continued or
    replaced only when asked; a file can be written there.

    Args:
        out: str. The `--out` argument: the run folder (created if missing),
            or with `out_is_file` the one file the run writes.
        written: list of str. Every path the run writes; a previous run is
            any of them that exists.
        inputs: dict. `{option: path or [paths]}` of what the run reads
            (`check_not_input`). Defaults to `None`: none.
        resume: bool or None. Continue the previous run; `None` for a run
            that cannot resume (its outputs are replaced as it writes them,
            and a refusal names `--overwrite` alone). Defaults to `False`.
        overwrite: bool. Replace a previous run. Defaults to `False`.
        out_is_file: bool. Whether `out` is a file; its folder is then
            checked and not locked. Defaults to `False`.
        resumable: callable. Takes `out` and raises when it holds no run that
            `resume` can continue (a finished run, a checkpoint that is not
            complete); `None`: any previous output can be continued.
            Defaults to `None`.

    Returns:
        The previous run's outputs found in `out`: with `overwrite`, what the
        caller removes (`remove_outputs`) once its own checks have passed.

    Raises:
        InputError: naming `--out` and what to pass instead.
        ValueError: `out` cannot be written (`check_writable`).
    """
    if resume and overwrite:
        raise InputError(
            f"--resume continues the run in {out}, --overwrite replaces it: pass "
            "one. Received: resume=True, overwrite=True"
        )
    if out_is_file:
        check_not_input(out, written, inputs)
    else:
        _check_inputs(out, written, inputs)
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(
                f"--out {out} is a file; pass a folder (created if missing)."
            )
        if os.path.isdir(out):
            lock_run_folder(out)
    previous = [p for p in written if os.path.exists(p)]
    _check_previous(out, previous, resume, overwrite, resumable)
    check_writable(os.path.dirname(real(out)) if out_is_file else out)
    if not out_is_file:
        lock_run_folder(out)
    return previous


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
    """Removes each file or folder of `paths`."""
    for path in paths:
        (shutil.rmtree if os.path.isdir(path) else os.remove)(path)
