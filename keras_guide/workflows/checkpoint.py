"""Every file a workflow writes to resume a run or to ship weights.

Every file goes through `write_atomic`: written under a temporary name in
its folder, flushed to disk (`fsync`), then renamed over its final name
(`os.replace`, atomic on POSIX and Windows), so a reader sees the old file
or the new one, never a torn one.

One `.npz` format for variables: one array per variable, keyed
`"{index:05d}:{path}"` in the order given (older files keyed `"{index}"` or
`"{index:03d}:{path}"` load too); loading checks the count, each shape and,
where asked, each path.

A distillation checkpoint folder holds one set per saved step,
`step-{k:08d}/`, with `student.keras` (the student, saved by Keras),
`optimizer.npz` (the optimizer's variables), `state.json` (the step, the run
length, the student's dropout seed states, which `.keras` files do not
keep, and the backend's global random state: PyTorch draws unseeded
dropout masks from it) and, written last, `manifest.json`: the step, the
run's settings and the SHA-256 of each file. A set counts only when its
manifest exists and every hash matches, so a run killed at any point of a
save leaves the previous complete set to resume from; `latest` picks the
newest complete set and `restore` refuses one whose settings differ from
the run's, listing each difference. Older sets are removed once a newer one
is complete (the newest `keep` stay).
"""

import dataclasses
import hashlib
import json
import os
import shutil

import numpy as np

from keras_guide import _backend
from keras_guide import _files

STUDENT_FILE = "student.keras"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
# The files a set holds besides its manifest.
SET_FILES = (STUDENT_FILE, OPTIMIZER_FILE, STATE_FILE)
SET_PREFIX = "step-"
# The stages of a save, in order; `_stage` is called after each (a crash
# test kills the process there). "X:tmp" means X is written under its
# temporary name but not yet renamed.
STAGES = (
    "begin",
    "student.keras:tmp",
    "student.keras",
    "optimizer.npz:tmp",
    "optimizer.npz",
    "state.json:tmp",
    "state.json",
    "manifest.json:tmp",
    "manifest.json",
    "pruned",
)


class ResumeError(ValueError):
    """A run cannot resume: no checkpoint, a finished run, or other settings."""


def _stage(name, step):
    """Called after each stage of a save; does nothing (a test hook)."""


def checkpoint_dir(out_dir):
    """The checkpoint folder of a run writing to `out_dir`."""
    return os.path.join(out_dir, "checkpoint")


def write_atomic(path, write, stage=None, step=None):
    """`_files.write_atomic`, calling `_stage(f"{stage}:tmp")` before the
    rename and `_stage(stage)` after it when `stage` is given."""
    if stage is None:
        return _files.write_atomic(path, write)
    _files.write_atomic(path, write, lambda: _stage(f"{stage}:tmp", step))
    _stage(stage, step)


def write_json(path, record, stage=None, step=None):
    """`write_atomic` for a JSON record."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)

    write_atomic(path, write, stage, step)


def remove_temporaries(folder):
    """Removes the temporary files a killed `write_atomic` left in `folder`."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if _files.is_temporary(name):
                os.remove(os.path.join(folder, name))


def file_digest(path):
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_variables(variables, path, dtype=None, compressed=False):
    """Writes `variables` (Keras variables, in order) to an `.npz` file.

    Args:
        variables: the variables, e.g. `model.weights` or
            `optimizer.variables`.
        path: the `.npz` file (written atomically).
        dtype: cast every array to it (e.g. `float16` to ship weights).
        compressed: write a compressed archive.
    """
    _write_variables(variables, path, dtype, compressed)


def _write_variables(
    variables, path, dtype=None, compressed=False, stage=None, step=None
):
    import keras

    arrays = {}
    for i, variable in enumerate(variables):
        value = keras.ops.convert_to_numpy(variable)
        arrays[f"{i:05d}:{variable.path}"] = (
            value if dtype is None else (value.astype(dtype))
        )
    save = np.savez_compressed if compressed else np.savez
    write_atomic(path, lambda tmp: save(tmp, **arrays), stage, step)


def load_variables(variables, path, check_paths=True):
    """Assigns the arrays of an `.npz` file written by `save_variables`.

    Args:
        variables: the variables to assign, in the order they were saved.
        path: the `.npz` file.
        check_paths: also require each stored path to equal the variable's
            (off for optimizer variables, whose paths carry the optimizer's
            name, which Keras makes unique per process).

    Raises:
        ValueError: if the count, a shape or a path differs, naming both.
    """
    with np.load(path) as archive:
        keys = sorted(archive.files, key=lambda key: int(key.split(":", 1)[0]))
        if len(keys) != len(variables):
            raise ValueError(
                f"{path} holds {len(keys)} arrays but {len(variables)} variables "
                "are to be loaded: it was written for another model."
            )
        for key, variable in zip(keys, variables):
            value = archive[key]
            stored_path = key.split(":", 1)[1] if ":" in key else None
            wrong_path = check_paths and stored_path not in (None, variable.path)
            if wrong_path or value.shape != tuple(variable.shape):
                raise ValueError(
                    f"Weight {variable.path} of shape {variable.shape} does not "
                    f"match {key} of shape {value.shape} in {path}."
                )
            variable.assign(value.astype(variable.dtype))


def seed_states(model):
    """The model's dropout seed-generator state variables, in layer order.

    A `.keras` file does not save them (a loaded model draws new seeds), so
    a checkpoint keeps them for a resumed run's dropout masks to continue
    the interrupted run's.
    """
    return [
        v for v in model.non_trainable_variables if v.name == "seed_generator_state"
    ]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint set.

    Attributes:
        path: the set's folder.
        step: the step it was taken after.
        num_steps: the length of its run.
        settings: the run's settings (`run.run_settings`).
        skipped: `(set folder, reason)` for each newer set that was not
            complete (a save that was interrupted).
    """

    path: str
    step: int
    num_steps: int
    settings: dict
    skipped: tuple = ()

    def describe(self):
        """One line saying which set this is, and which newer ones were torn."""
        line = f"step {self.step} of {self.num_steps} ({self.path})"
        if self.skipped:
            torn = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in self.skipped)
            line += f"; skipped incomplete newer sets: {torn}"
        return line


def _set_path(directory, step):
    return os.path.join(directory, f"{SET_PREFIX}{int(step):08d}")


def _sets(directory):
    """The set folders in `directory`, newest first."""
    if not os.path.isdir(directory):
        return []
    names = [
        n
        for n in os.listdir(directory)
        if n.startswith(SET_PREFIX) and n[len(SET_PREFIX) :].isdigit()
    ]
    return [os.path.join(directory, n) for n in sorted(names, reverse=True)]


def _check_links(path):
    """Refuses a set that is, or holds, a link: its files must be its own."""
    for file in (path, *(os.path.join(path, n) for n in (MANIFEST_FILE, *SET_FILES))):
        if os.path.islink(file):
            target = os.path.realpath(file)
            where = (
                "outside the checkpoint"
                if not target.startswith(
                    os.path.realpath(os.path.dirname(path)) + os.sep
                )
                else "not a file of its own"
            )
            name = os.path.relpath(file, os.path.dirname(path))
            raise ValueError(f"{name} is a link to {target}, {where}")


def _check_state(path, step, num_steps):
    """Compares the manifest's step with what the set holds (`state.json`).

    Raises:
        ResumeError: they differ: the manifest was edited (a save writes
            the manifest last, from the same step), so the set is refused
            rather than skipped.
    """
    try:
        with open(os.path.join(path, STATE_FILE)) as f:
            state = json.load(f)
        held = (state["step"], state["num_steps"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"unreadable {STATE_FILE} ({error})") from None
    if held != (step, num_steps):
        raise ResumeError(
            f"The checkpoint {path} claims step {step} of {num_steps} in its "
            f"{MANIFEST_FILE}, but its {STATE_FILE} holds step {held[0]} of "
            f"{held[1]}: the manifest was edited or copied from elsewhere. "
            "Remove that set to resume from an older one, or start a new run "
            "(another --out, or --overwrite)."
        )


def _check_set(path):
    """The manifest of a complete set, or raises `ValueError` saying what is wrong.

    Raises:
        ResumeError: a manifest whose step is not what the set holds.
    """
    _check_links(path)
    manifest_path = os.path.join(path, MANIFEST_FILE)
    if not os.path.exists(manifest_path):
        raise ValueError("no manifest (the save did not finish)")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        files = manifest["files"]
        step, num_steps = manifest["step"], manifest["num_steps"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"unreadable manifest ({error})") from None
    # The manifest is read, not trusted: it lists exactly the set's own
    # files, and a step the run could have reached, named as its folder is.
    listed = sorted(files) if isinstance(files, dict) else files
    if listed != sorted(SET_FILES):
        raise ValueError(
            f"the manifest lists {listed!r}, not the set's files {sorted(SET_FILES)}"
        )
    valid = all(
        isinstance(v, int) and not isinstance(v, bool) for v in (step, num_steps)
    )
    if (
        not valid
        or not 0 < step <= num_steps
        or path != _set_path(os.path.dirname(path), step)
    ):
        raise ValueError(
            f"the manifest's step {step!r} of {num_steps!r} is not "
            f"this set's ({os.path.basename(path)})"
        )
    for name, expected in files.items():
        file = os.path.join(path, name)
        if not os.path.exists(file):
            raise ValueError(f"{name} is missing")
        if file_digest(file) != expected:
            raise ValueError(f"{name} does not match its hash")
    _check_state(path, step, num_steps)
    return manifest


def latest(directory):
    """The newest complete set in `directory` as a `Checkpoint`, or `None`.

    Raises:
        ResumeError: the newest set whose files match its manifest holds
            another step than the manifest says (an edited manifest).
    """
    skipped = []
    for path in _sets(directory):
        try:
            manifest = _check_set(path)
        except ResumeError:
            raise
        except ValueError as reason:
            skipped.append((path, str(reason)))
            continue
        return Checkpoint(
            path,
            int(manifest["step"]),
            int(manifest["num_steps"]),
            manifest.get("settings") or {},
            tuple(skipped),
        )
    return None


def skipped_sets(directory):
    """`(set folder, why it does not count)` for every set in `directory`
    that is not complete, newest first."""
    skipped = []
    for path in _sets(directory):
        try:
            _check_set(path)
        except ResumeError:
            raise
        except ValueError as reason:
            skipped.append((path, str(reason)))
    return skipped


def settings_differences(stored, current, names=None):
    """`"name: stored -> current"` for each setting that differs, in the
    order of their keys.

    Args:
        stored: dict. The recorded settings.
        current: dict. This run's settings.
        names: dict. How to name each key (as the command line does);
            `None` or a key left out: the key. Defaults to `None`.
    """
    names = names or {}
    missing = "(not set)"
    return [
        f"{names.get(key, key)}: {stored.get(key, missing)!r} -> "
        f"{current.get(key, missing)!r}"
        for key in sorted(set(stored) | set(current))
        if stored.get(key, missing) != current.get(key, missing)
    ]


def save(directory, student, optimizer, step, num_steps, settings=None, keep=2):
    """Writes a complete checkpoint set taken after `step` of `num_steps`.

    The files first, each atomically, the manifest (with their hashes and
    `settings`) last; then sets older than the newest `keep` are removed.

    Returns:
        The set's folder.
    """
    path = _set_path(directory, step)
    os.makedirs(path, exist_ok=True)
    _files.fsync_dir(directory)
    remove_temporaries(path)
    manifest_path = os.path.join(path, MANIFEST_FILE)
    if os.path.exists(manifest_path):
        # A set of this step from an earlier try: it stops counting before
        # any of its files changes.
        os.remove(manifest_path)
        _files.fsync_dir(path)
    _stage("begin", step)
    write_atomic(os.path.join(path, STUDENT_FILE), student.save, STUDENT_FILE, step)
    _write_variables(
        optimizer.variables,
        os.path.join(path, OPTIMIZER_FILE),
        stage=OPTIMIZER_FILE,
        step=step,
    )
    import keras

    seeds = [
        keras.ops.convert_to_numpy(v).astype(np.int64).tolist()
        for v in seed_states(student)
    ]
    state = {
        "step": int(step),
        "num_steps": int(num_steps),
        "seed_states": seeds,
        "global_rng": _backend.rng_state(),
    }
    write_json(os.path.join(path, STATE_FILE), state, STATE_FILE, step)
    files = {name: file_digest(os.path.join(path, name)) for name in SET_FILES}
    manifest = {
        "step": int(step),
        "num_steps": int(num_steps),
        "settings": settings or {},
        "files": files,
    }
    write_json(manifest_path, manifest, MANIFEST_FILE, step)
    _prune(directory, path, keep)
    _stage("pruned", step)
    return path


def _prune(directory, newest, keep):
    """Removes the sets older than the `keep` newest complete ones, and any
    set older than `newest` that never completed."""
    complete = 0
    for path in _sets(directory):
        if path > newest:
            continue
        if complete < keep and os.path.exists(os.path.join(path, MANIFEST_FILE)):
            complete += 1
            continue
        shutil.rmtree(path, ignore_errors=True)


def restore(directory, student, settings=None):
    """Loads the newest complete set into `student`; returns its `Checkpoint`,
    or `None` when there is none.

    The student's weights and dropout seed states are set from the set.

    Args:
        directory: the checkpoint folder.
        student: the run's student (built like the checkpoint's).
        settings: the resuming run's settings; `None` skips the comparison.

    Raises:
        ResumeError: if the set's settings (or its run length) differ from
            `settings`, listing every difference, or its manifest is not what
            it holds; nothing is loaded then.
    """
    found = latest(directory)
    if found is None:
        return None
    if settings is not None:
        differences = settings_differences(found.settings, settings)
        if differences:
            raise ResumeError(
                f"The checkpoint at {found.path} belongs to a run with other "
                f"settings: {'; '.join(differences)}. Resume with the same "
                "inputs and options, or start a new run (another --out, or "
                f"--overwrite). Received: {len(differences)} differences"
            )
        if settings.get("num_steps", found.num_steps) != found.num_steps:
            raise ResumeError(
                f"The checkpoint at {found.path} was taken in a run of "
                f"{found.num_steps} steps (its manifest); this run has "
                f"{settings['num_steps']}. Resume with the same --steps, or start "
                "a new run (another --out, or --overwrite)."
            )
    with open(os.path.join(found.path, STATE_FILE)) as f:
        state = json.load(f)
    stored = state.get("seed_states", [])
    variables = seed_states(student)
    if len(stored) != len(variables):
        raise ResumeError(
            f"The checkpoint at {found.path} holds {len(stored)} dropout seed "
            f"states but the student has {len(variables)}: it was written for "
            "another student. Start a new run (--overwrite)."
        )
    student.load_weights(os.path.join(found.path, STUDENT_FILE))
    for variable, value in zip(variables, stored):
        variable.assign(np.asarray(value).astype(variable.dtype))
    _backend.set_rng_state(state.get("global_rng"))
    return found


def restore_optimizer(found, optimizer, variables):
    """Builds `optimizer` for `variables` and loads the state saved in `found`
    (a `Checkpoint`, or a set's folder)."""
    path = found.path if isinstance(found, Checkpoint) else found
    optimizer.build(variables)
    load_variables(
        optimizer.variables, os.path.join(path, OPTIMIZER_FILE), check_paths=False
    )
