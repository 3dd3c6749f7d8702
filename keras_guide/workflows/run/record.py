"""A run's record: the settings a resume must find unchanged.

`compress` writes its settings to `out_dir/run.json` before it starts
(`compress_settings`, `same_run`); `distill` keeps its own in every
checkpoint's manifest and in `distill.json` (`run_settings`, compared by
`checkpoint.restore`). Models and text are recorded by content
(`model_digest`, `array_digest`), so a resume with
another teacher, student or text is refused, naming each difference, rather
than mixing two runs.
"""

import hashlib
import json
import os

import keras
import numpy as np

from keras_guide.workflows import checkpoint
from keras_guide.workflows.run.budget import kd_settings

# What `compress` records of a run before it starts (`same_run`), as the
# command line names each setting.
RUN_FILE = "run.json"
_OPTION_NAMES = {
    "teacher": "TEACHER",
    "size": "--size",
    "text": "--text",
    "eval_text": "--eval",
    "sequence_length": "--sequence-length",
    "kd": "--kd/--temperature/--student-loss-weight/--top-k",
    "guide_options": "the GUIDE options",
    "init": "--init",
    "steps": "--steps",
    "batch_size": "--batch-size",
    "learning_rate": "--learning-rate",
    "warmup_steps": "warm-up steps",
    "checkpoint_every": "--checkpoint-every",
    "seed": "--seed",
    "candidates": "--candidates",
    "calibration_tokens": "--calibration-tokens",
    "eval_windows": "--eval-tokens",
    "backend": "the Keras backend",
}


def array_digest(*arrays):
    """The SHA-256 of arrays' dtypes, shapes and bytes, as hex."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_digest(model):
    """A model's identity by content: class, backbone config and weights.

    The SHA-256 of the model's class name, its KerasHub backbone's config
    (without `name`), and every weight's dtype, shape and values in order;
    names and paths are left out (Keras numbers them per process), so the
    same model loaded twice, or saved in another format, digests alike.
    """
    digest = hashlib.sha256(type(model).__name__.encode())
    backbone = getattr(model, "backbone", None) or model
    if hasattr(backbone, "vocabulary_size"):
        config = {
            k: v
            for k, v in backbone.get_config().items()
            if k not in ("name", "trainable")
        }
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        # Read through a temporary: reading a JAX array itself caches a host
        # copy on it (see `keras_guide._host`), which would keep the whole
        # teacher in host memory for the rest of the run.
        flat = keras.ops.convert_to_numpy(keras.ops.reshape(weight, (-1,)))
        digest.update(f"{tuple(weight.shape)}".encode())
        digest.update(array_digest(flat).encode())
    return digest.hexdigest()


def _windows_summary(windows):
    """Windows as `run.json` records them: their tokens, count and digest."""
    tokens, mask = windows
    return (
        f"{int(np.asarray(mask).sum()):,} tokens in {len(tokens)} windows "
        f"(sha256 {array_digest(tokens, mask)[:12]})"
    )


def compress_settings(
    teacher,
    windows,
    budget,
    *,
    target,
    shape,
    calibration_tokens,
    max_candidates,
    guide_options,
    eval_windows,
    limits=None,
    init="guide",
):
    """Every setting that shapes a `compress` run's result, as JSON values.

    Args:
        teacher: keras.Model. The teacher (by content, `model_digest`).
        windows: tuple. `(train, held_out)` windows (by content: the text,
            the tokenizer and the sequence length).
        budget: Budget. The run's budget.
        target: int. The parameter count asked for, or `None` for `shape`.
        shape: dict. The sizes asked for, when `target` is `None`.
        calibration_tokens, max_candidates, guide_options, eval_windows,
            limits, init: `compress`'s arguments of those names (`limits`
            defaults to `None`, `init` to `"guide"`).

    Returns:
        A dict keyed as `same_run` names the settings.
    """
    train, held = windows
    return json.loads(
        json.dumps(
            {
                "teacher": f"sha256 {model_digest(teacher)[:12]}",
                "size": (
                    f"{int(target):,} parameters"
                    if target is not None
                    else ", ".join(f"{k}={v}" for k, v in sorted(dict(shape).items()))
                ),
                "text": _windows_summary(train),
                "eval_text": _windows_summary(held),
                "sequence_length": int(train[0].shape[1] - 1),
                "kd": budget.kd,
                "guide_options": dict(sorted((guide_options or {}).items())),
                **{
                    name: getattr(budget, name)
                    for name in (
                        "steps",
                        "batch_size",
                        "learning_rate",
                        "warmup_steps",
                        "checkpoint_every",
                        "seed",
                    )
                },
                # Only where set: runs before the option resume as they were.
                **(
                    {"search_steps": budget.search_steps} if budget.search_steps else {}
                ),
                **({"runtime_limits": limits.describe()} if limits is not None else {}),
                **({"init": init} if init != "guide" else {}),
                "candidates": int(max_candidates),
                "calibration_tokens": int(calibration_tokens),
                "eval_windows": eval_windows,
                "backend": keras.backend.backend(),
            },
            default=str,
        )
    )


def same_run(out_dir, resume, settings):
    """Records a run's settings in `out_dir/run.json`, or on `resume`
    compares them with the recorded ones first.

    A resume takes what the interrupted run decided (its chosen student,
    its training) as they are, so any setting that would have decided them
    otherwise is refused rather than ignored. A run without a record (made
    before runs kept one) gets one.

    Args:
        out_dir: str. The run folder.
        resume: bool. Whether the run continues the one in `out_dir`.
        settings: dict. `compress_settings(...)`.

    Raises:
        checkpoint.ResumeError: a setting differs, naming it (as the command
            line does) and both values; nothing is changed then.
    """
    path = os.path.join(out_dir, RUN_FILE)
    if resume and os.path.exists(path):
        try:
            with open(path) as f:
                stored = json.load(f)
        except (OSError, ValueError) as error:
            raise checkpoint.ResumeError(
                f"--resume: {path} cannot be read ({error}); start "
                "a new run (another --out, or --overwrite)."
            ) from None
        changed = checkpoint.settings_differences(stored, settings, _OPTION_NAMES)
        if changed:
            raise checkpoint.ResumeError(
                f"--resume: the run in {out_dir} was made with other settings: "
                f"{'; '.join(changed)}. A resume keeps what the run decided, so "
                "resume with the same options, or start a new run (another "
                "--out, or --overwrite)."
            )
        return
    checkpoint.write_json(path, settings)


def run_settings(teacher, student, windows, budget, extra=None):
    """What must not change between a `distill` run and its resume.

    Args:
        teacher: keras.Model. The teacher.
        student: keras.Model. The initial student.
        windows: tuple. `(train, held_out)` windows.
        budget: Budget. The run's budget.
        extra: dict. More settings a resume must match. Defaults to `None`.

    Returns:
        A JSON-able dict: the teacher's and the initial student's
        `model_digest`, the windows' digest (text, tokenizer,
        sequence length and held-out split), the budget (`kd_settings`: the
        KD setting with its defaults filled in), the backend, and `extra`.
    """
    (train_tokens, train_mask), (held_tokens, held_mask) = windows
    return {
        "teacher": model_digest(teacher),
        "student": model_digest(student),
        "data": array_digest(train_tokens, train_mask, held_tokens, held_mask),
        "num_steps": int(budget.steps),
        "batch_size": int(budget.batch_size),
        "learning_rate": float(budget.learning_rate),
        "warmup_steps": int(budget.warmup),
        **kd_settings(budget.kd),
        "checkpoint_every": int(budget.checkpoint_every),
        "seed": int(budget.seed),
        "backend": keras.backend.backend(),
        **(extra or {}),
    }
