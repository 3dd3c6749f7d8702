"""Every file a workflow writes to resume a run or to ship weights.

One `.npz` format for variables: one array per variable, keyed
`"{index:05d}:{path}"` in the order given (older files keyed `"{index}"` or
`"{index:03d}:{path}"` load too); loading checks the count, each shape and,
where asked, each path.

A distillation checkpoint is a folder holding `student.keras` (the student,
saved by Keras), `optimizer.npz` (the optimizer's variables) and
`state.json` (`{"step": k, "num_steps": n}`, the step it was taken after and
the length of the run, on which the learning-rate schedule depends).
"""

import json
import os

import numpy as np

STUDENT_FILE = "student.keras"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"


def checkpoint_dir(out_dir):
    """The checkpoint folder of a run writing to `out_dir`."""
    return os.path.join(out_dir, "checkpoint")


def save_variables(variables, path, dtype=None, compressed=False):
    """Writes `variables` (Keras variables, in order) to an `.npz` file.

    Args:
        variables: the variables, e.g. `model.weights` or
            `optimizer.variables`.
        path: the `.npz` file.
        dtype: cast every array to it (e.g. `float16` to ship weights).
        compressed: write a compressed archive.
    """
    import keras

    arrays = {}
    for i, variable in enumerate(variables):
        value = keras.ops.convert_to_numpy(variable)
        arrays[f"{i:05d}:{variable.path}"] = value if dtype is None else (
            value.astype(dtype))
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


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


def save(directory, student, optimizer, step, num_steps):
    """Writes a distillation checkpoint taken after `step` of `num_steps`."""
    os.makedirs(directory, exist_ok=True)
    student.save(os.path.join(directory, STUDENT_FILE))
    save_variables(optimizer.variables, os.path.join(directory, OPTIMIZER_FILE))
    with open(os.path.join(directory, STATE_FILE), "w") as f:
        json.dump({"step": int(step), "num_steps": int(num_steps)}, f)


def restore(directory, num_steps):
    """Returns `(step, student)` from the checkpoint in `directory`, or
    `(0, None)` when there is none.

    Raises:
        ValueError: if the checkpoint belongs to a run of another length.
    """
    state_path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(state_path):
        return 0, None
    import keras

    with open(state_path) as f:
        state = json.load(f)
    if int(state["num_steps"]) != int(num_steps):
        raise ValueError(
            f"The checkpoint in {directory} belongs to a run of "
            f"{state['num_steps']} steps (its learning-rate schedule depends on "
            f"it); resume with the same `num_steps`. Received: num_steps={num_steps}"
        )
    student = keras.saving.load_model(os.path.join(directory, STUDENT_FILE))
    return int(state["step"]), student


def restore_optimizer(directory, optimizer, variables):
    """Builds `optimizer` for `variables` and loads its saved state."""
    optimizer.build(variables)
    load_variables(optimizer.variables, os.path.join(directory, OPTIMIZER_FILE),
                   check_paths=False)
