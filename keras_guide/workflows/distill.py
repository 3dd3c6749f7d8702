"""`keras-guide distill`: a student trained with the `Distiller` on text.

A run writes `out_dir/checkpoint/` while it trains, then `student.keras`
and, last, `distill.json` (which marks the run finished), each file
atomically (`checkpoint.write_atomic`).

What a resumed run reproduces: its settings (the teacher and the initial
student by content hash, the text's windows, every option, the seed and
the backend) must equal the interrupted run's, or the resume is refused
with each difference. It then restores the student's weights, the
optimizer's variables, the step (hence the batch order and the
learning-rate schedule) and the student's dropout seed states, so the
final student and held-out loss equal an uninterrupted run's on the same
backend and machine (tested bit for bit after a `kill -9` at every stage
of a save, with dropout on). The recorded history covers the resumed steps
only, and the training time is that of the last process.
"""

import inspect
import math
import os
import shutil
import time

import keras
import numpy as np

from keras_guide.adapters import backbone_of
from keras_guide.distillation import Distiller
from keras_guide.distillation import LogitsDistillation
from keras_guide.distillation import teacher_top_k
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.workflows import checkpoint
from keras_guide.workflows import inputs
from keras_guide.workflows import teacher_targets
from keras_guide.workflows import text
from keras_guide.workflows import training
from keras_guide.workflows.inputs import check_writable  # noqa: F401 (its old home)

STUDENT_FILE = "student.keras"
RESULT_FILE = "distill.json"
# What a run writes into its `out_dir`: a previous run is any of them.
OUTPUTS = (STUDENT_FILE, RESULT_FILE, "checkpoint", teacher_targets.FOLDER)


def distiller_arguments(kd_options=None):
    """Maps `{"temperature": τ, "student_loss_weight": α}` to `Distiller` arguments.

    `None` or `{}` keeps the Distiller's defaults; `False` means no
    distillation (see `distill`)."""
    if kd_options is False:
        return None
    options = dict(kd_options or {})
    # How the teacher is read, not a Distiller argument.
    top_k = options.pop("top_k", None)
    options.pop("targets_from", None)
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(
            "`kd_options['top_k']` must be a positive integer (the "
            "teacher's logits stored per token). Received: "
            f"top_k={top_k!r}"
        )
    arguments = {}
    if "temperature" in options:
        arguments["distillation_losses"] = LogitsDistillation(
            temperature=options.pop("temperature")
        )
    if "student_loss_weight" in options:
        arguments["student_loss_weight"] = options.pop("student_loss_weight")
    if options:
        raise ValueError(
            "`kd_options` accepts 'temperature', 'student_loss_weight' and "
            "'top_k' (with 'targets_from'). "
            f"Received: kd_options={kd_options!r}"
        )
    return arguments


class StoredTeacherBatches:
    """Training batches whose targets carry the teacher's top-k logits.

    The offline teacher of `keras_guide.distillation.teacher_top_k`, stored
    window by window the first time a batch holds the window (one teacher
    pass per window, in inference mode), then read from memory in every
    later epoch; with each token's log-normalizer at the distillation
    temperature, so the teacher's tail beyond the top `k` stays one class.
    Memory: `8·k + 4` bytes per token of the windows used.

    Args:
        batches: a `text.Batches`.
        teacher: the teacher (a KerasHub causal LM or a model to logits).
        top_k: logits kept per token.
        temperature: the Distiller's temperature.
        num_steps: the steps the run trains (bounds the windows stored).

    Raises:
        ValueError: `top_k` above the teacher's vocabulary, or stored logits
            that would take more than half of this machine's memory (before
            anything is stored or any previous output removed).
    """

    def __init__(self, batches, teacher, top_k, temperature, num_steps):
        self.batches, self.teacher = batches, teacher
        self.top_k, self.temperature = int(top_k), float(temperature)
        self.stored = {}
        self.seconds = 0.0
        vocabulary = getattr(backbone_of(teacher), "vocabulary_size", None)
        if vocabulary is not None and self.top_k > vocabulary:
            raise ValueError(
                f"`top_k` ({self.top_k}) is more than the teacher's vocabulary "
                f"({vocabulary}): pass at most {vocabulary} (all of it is the live "
                "teacher's distribution)."
            )
        windows = min(len(batches.tokens), int(num_steps) * batches.batch_size)
        tokens = windows * (batches.tokens.shape[1] - 1)
        needed = tokens * (8 * self.top_k + 4)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if needed > memory // 2:
            raise ValueError(
                f"Storing the teacher's top {self.top_k} logits for the {windows} "
                f"windows this run uses ({tokens} tokens) takes "
                f"{needed / 2**30:.1f} GiB, more than half of this machine's "
                f"{memory / 2**30:.1f} GiB: pass a smaller top_k, fewer steps, or "
                "distil from the live teacher (no top_k)."
            )

    def batch(self, step):
        x, y, weight = self.batches.batch(step)
        rows = [int(r) for r in self.batches.rows(step)]
        missing = sorted({r for r in rows if r not in self.stored})
        if missing:
            started = time.perf_counter()
            inputs, _, _ = text.window_batch(
                self.batches.tokens[missing], self.batches.mask[missing]
            )
            stored = teacher_top_k(
                self.teacher,
                inputs,
                self.top_k,
                batch_size=len(missing),
                temperature=self.temperature,
            )
            for i, row in enumerate(missing):
                self.stored[row] = {key: value[i] for key, value in stored.items()}
            self.seconds += time.perf_counter() - started
        targets = {
            key: np.stack([self.stored[r][key] for r in rows])
            for key in self.stored[rows[0]]
        }
        return x, {"labels": y, **targets}, weight


def _default(function, name):
    return inspect.signature(function).parameters[name].default


def run_settings(
    teacher,
    student,
    windows,
    num_steps,
    batch_size,
    learning_rate,
    warmup_steps,
    kd_options,
    checkpoint_every,
    seed,
    extra=None,
):
    """What must not change between a run and its resume.

    Returns:
        A JSON-able dict: the teacher's and the initial student's
        `checkpoint.model_digest`, the windows' digest (text, tokenizer,
        sequence length and held-out split), every option (the KD options
        with their defaults filled in), the seed, the backend, and `extra`.
    """
    kd = dict(kd_options or {})
    if kd_options is False:  # cross-entropy alone: no teacher term
        kd = {"temperature": 0.0, "student_loss_weight": 1.0}
    (train_tokens, train_mask), (held_tokens, held_mask) = windows
    return {
        "teacher": checkpoint.model_digest(teacher),
        "student": checkpoint.model_digest(student),
        "data": checkpoint.array_digest(
            train_tokens, train_mask, held_tokens, held_mask
        ),
        "num_steps": int(num_steps),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "warmup_steps": int(warmup_steps),
        "temperature": float(
            kd.get("temperature", _default(LogitsDistillation, "temperature"))
        ),
        "student_loss_weight": float(
            kd.get("student_loss_weight", _default(Distiller, "student_loss_weight"))
        ),
        "top_k": int(kd.get("top_k") or 0),
        # Only where set: the settings of runs before the option stay as they were.
        **({"targets_from": kd["targets_from"]} if kd.get("targets_from") else {}),
        "checkpoint_every": int(checkpoint_every),
        "seed": int(seed),
        "backend": keras.backend.backend(),
        **(extra or {}),
    }


def check_output(out_dir, resume=False, overwrite=False):
    """Checks `out_dir` before anything is loaded or trained; changes nothing
    but creating the folder and taking it for this process
    (`inputs.lock_run_folder`: a folder another running process owns is
    refused, naming its pid).

    Returns:
        The names of a previous run's outputs in `out_dir` (what
        `overwrite=True` will replace).

    Raises:
        ValueError: `out_dir` is a file or not writable, is owned by another
            running process, holds a previous run and neither `resume` nor
            `overwrite` is set, or both are.
        checkpoint.ResumeError: `resume` into a folder without a complete
            checkpoint, or into a finished run.
    """
    if resume and overwrite:
        raise ValueError(
            "`resume` continues the run in `out_dir` and `overwrite` replaces it; "
            "pass one. Received: resume=True, overwrite=True"
        )
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(
            f"`out_dir` must be a folder, but {out_dir} is a file. Pass a folder "
            f"(it is created if missing). Received: out_dir={out_dir!r}"
        )
    if os.path.isdir(out_dir):
        # A running run's folder is refused as such, before its files count
        # as a previous run's.
        inputs.lock_run_folder(out_dir)
    previous = [name for name in OUTPUTS if os.path.exists(os.path.join(out_dir, name))]
    if resume:
        _check_resumable(out_dir)
    elif previous and not overwrite:
        raise ValueError(
            f"{out_dir} holds a previous run ({', '.join(previous)}): pass "
            "--resume to continue it, --overwrite to replace it, or another "
            f"--out. Received: out_dir={out_dir!r}"
        )
    inputs.check_writable(out_dir)
    inputs.lock_run_folder(out_dir)
    return previous


def _check_resumable(out_dir):
    result = os.path.join(out_dir, RESULT_FILE)
    if os.path.exists(result):
        raise checkpoint.ResumeError(
            f"The run in {out_dir} has finished ({result} exists): there is "
            "nothing to resume. Its student is "
            f"{os.path.join(out_dir, STUDENT_FILE)}; pass --overwrite to run it "
            f"again, or another --out. Received: out_dir={out_dir!r}"
        )
    directory = checkpoint.checkpoint_dir(out_dir)
    found = checkpoint.latest(directory)
    stored = os.path.join(out_dir, teacher_targets.FOLDER, teacher_targets.MANIFEST)
    if found is None and not os.path.exists(stored):
        # Each set's own reason: an interrupted save, a link out of the
        # checkpoint, a manifest that does not fit its set.
        torn = checkpoint.skipped_sets(directory)
        reasons = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in torn)
        detail = f" ({len(torn)} incomplete sets: {reasons})" if torn else ""
        raise checkpoint.ResumeError(
            f"--resume: {out_dir} has no complete checkpoint to resume"
            f"{detail}. Run without --resume to start (add --overwrite if "
            f"{out_dir} holds files of a run). Received: out_dir={out_dir!r}"
        )


def _check_options(
    num_steps, batch_size, learning_rate, warmup_steps, checkpoint_every, seed
):
    for name, value, low in (
        ("num_steps", num_steps, 1),
        ("batch_size", batch_size, 1),
        ("warmup_steps", warmup_steps, 0),
        ("checkpoint_every", checkpoint_every, 1),
        ("seed", seed, 0),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or (value < low)
        ):
            raise ValueError(
                f"`{name}` must be an integer ≥ {low}. Received: {name}={value!r}"
            )
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float, np.number))
        or not (math.isfinite(learning_rate) and learning_rate > 0)
    ):
        raise ValueError(
            "`learning_rate` must be a finite number > 0 (a negative rate trains "
            f"uphill). Received: learning_rate={learning_rate!r}"
        )


def seed_dropout(model, seed):
    """Sets `model`'s dropout seed states from `seed` alone, so the masks do
    not depend on what the process created before the model."""
    for i, variable in enumerate(checkpoint.seed_states(model)):
        first = int(np.random.default_rng([int(seed), i]).integers(1, 2**30))
        variable.assign(np.asarray([first, 0]).astype(variable.dtype))


@inputs.owns_run_folder("out_dir")
def distill(
    teacher,
    student,
    windows,
    out_dir,
    num_steps=1000,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=None,
    kd_options=None,
    checkpoint_every=200,
    seed=0,
    resume=False,
    overwrite=False,
    settings_extra=None,
    verbose=True,
    eval_windows=None,
    teacher_path=None,
    stop_step=None,
):
    """Trains `student` in place with the `Distiller` (CE + KD) on tokenized text.

    Writes checkpoints in `checkpoint.checkpoint_dir(out_dir)` every
    `checkpoint_every` steps and at the end, then `out_dir/student.keras`
    and `out_dir/distill.json` (the result and the history).

    Args:
        teacher, student: causal LMs over the same vocabulary; `student` is
            the initial student, also when resuming (its identity is
            checked; the checkpoint's weights are then loaded into it).
        windows: `(train, held_out)` windows from `text.text_windows`.
        out_dir: the output folder.
        num_steps, batch_size, learning_rate, warmup_steps: the budget; the
            warm-up defaults to a tenth of the steps.
        kd_options: `{"temperature": τ, "student_loss_weight": α}` for the
            `Distiller` (`None`: its defaults), with `"top_k": k` to distil
            from the teacher's stored top-k logits (`StoredTeacherBatches`)
            instead of the live teacher (with `"targets_from": "llama.cpp"`
            or `"keras"`, computed before training by llama.cpp from
            `teacher_path` or by the Keras teacher, and stored in
            `out_dir/teacher_targets/`: `teacher_targets.DiskTargets`), or
            `False`: cross-entropy on the text alone, the student trained
            without running the teacher.
        checkpoint_every: steps between checkpoints (and evaluations).
        seed: fixes the data order, the dropout masks and Keras' global
            random state (`keras.utils.set_random_seed`).
        resume: continue the run in `out_dir` from its newest complete
            checkpoint (see the module docstring for what must match).
        overwrite: replace a previous run's outputs in `out_dir`.
        settings_extra: more settings a resume must match (the command line
            adds how the models are distributed).
        verbose: progress bar, and which checkpoint a resume starts from.
        eval_windows: evaluate on this many held-out windows, evenly spaced
            (default: all).
        teacher_path: the teacher's `.gguf` file, for targets from llama.cpp.
        stop_step: stop after this step with a checkpoint there (a `resume`
            continues it), writing no final file; `None` trains to
            `num_steps`.

    Returns:
        dict with `held_out_loss`, `teacher_loss`, `steps`, `start_step`,
        `train_seconds`, `tokens`; with `top_k`, `teacher_top_k_seconds`
        (the time spent storing the targets, over every process of the run)
        and, with `targets_from`, `teacher_windows_scored` (by this process).
        Stopped at `stop_step`: `{"stopped_at", "held_out_loss",
        "train_seconds", "tokens"}`.

    Raises:
        ValueError: an option out of range, or an `out_dir` that cannot be
            written, is owned by another running process (`out_dir` is this
            run's for the call: `inputs.lock_run_folder`), or holds a run it
            was not asked to resume or overwrite.
        checkpoint.ResumeError: nothing to resume, a finished run, or
            settings that differ from the checkpoint's (each listed).
    """
    warmup = warmup_steps if warmup_steps is not None else max(1, num_steps // 10)
    _check_options(num_steps, batch_size, learning_rate, warmup, checkpoint_every, seed)
    previous = check_output(out_dir, resume, overwrite)
    checkpoint.remove_temporaries(out_dir)
    arguments = distiller_arguments(kd_options)
    settings = run_settings(
        teacher,
        student,
        windows,
        num_steps,
        batch_size,
        learning_rate,
        warmup,
        kd_options,
        checkpoint_every,
        seed,
        settings_extra,
    )
    batches = text.Batches(*windows[0], batch_size=batch_size, seed=seed)
    top_k = (kd_options or {}).get("top_k") if kd_options is not False else None
    source = (kd_options or {}).get("targets_from")
    from_disk = bool(top_k and source)
    if kd_options:
        teacher_targets.check_source(source, teacher_path, top_k)
    if from_disk:
        scorer = (
            teacher_targets.LlamaCppScorer(teacher_path, windows[0][0].shape[1] - 1)
            if source == "llama.cpp"
            else teacher_targets.KerasScorer(teacher, batch_size)
        )
        batches = teacher_targets.DiskTargets(
            batches,
            scorer,
            os.path.join(out_dir, teacher_targets.FOLDER),
            top_k,
            settings["temperature"],
            num_steps,
            source,
            settings["teacher"],
            settings["data"],
            reuse=resume,
        )
    elif top_k:
        batches = StoredTeacherBatches(
            batches, teacher, top_k, settings["temperature"], num_steps
        )
    held = text.eval_batches(
        *windows[1], batch_size=max(batch_size, 16), max_windows=eval_windows
    )
    directory = checkpoint.checkpoint_dir(out_dir)
    keras.utils.set_random_seed(int(seed))
    seed_dropout(student, seed)
    found = checkpoint.restore(directory, student, settings) if resume else None
    if not resume:
        for name in previous:
            path = os.path.join(out_dir, name)
            (shutil.rmtree if os.path.isdir(path) else os.remove)(path)
    scored = batches.fill(verbose=verbose) if from_disk else None
    start_step = found.step if found else 0
    if found and verbose:
        print(f"Resuming from checkpoint {found.describe()}")
    optimizer = training.adamw(learning_rate, num_steps, warmup)
    if arguments is None:
        # The student's own graph, sharing its weights, without the task's
        # preprocessor (which would tokenize the token ids again).
        distiller = keras.Model(student.inputs, student.outputs)
        distiller.compile(optimizer=optimizer, loss=training.causal_lm_loss())
    else:
        distiller = Distiller(teacher, student, **arguments)
        distiller.compile(optimizer=optimizer)
    if found:
        checkpoint.restore_optimizer(found, optimizer, student.trainable_variables)

    end = num_steps if stop_step is None else stop_step

    def save_checkpoint(step, _loss):
        if (
            step == start_step
            or step % checkpoint_every
            and step
            not in (
                num_steps,
                end,
            )
        ):
            return
        checkpoint.save(directory, student, optimizer, step, num_steps, settings)

    history = training.train(
        distiller,
        batches,
        end,
        start_step=start_step,
        evaluate=lambda _: heldout_cross_entropy(student, held),
        eval_every=max(1, min(checkpoint_every, num_steps)),
        verbose=verbose,
        label=f"Distilling {end - start_step} steps",
        on_eval=save_checkpoint,
    )
    if end < num_steps:
        return {
            "stopped_at": end,
            "held_out_loss": history["eval_loss"][-1],
            "train_seconds": history["train_seconds"],
            "tokens": history["tokens"],
        }
    checkpoint.write_atomic(
        os.path.join(out_dir, STUDENT_FILE),
        student.save,
        "final:" + STUDENT_FILE,
        num_steps,
    )
    result = {
        "held_out_loss": history["eval_loss"][-1],
        "teacher_loss": heldout_cross_entropy(teacher, held),
        "steps": num_steps,
        "start_step": start_step,
        "train_seconds": history["train_seconds"],
        "tokens": history["tokens"],
    }
    if top_k:
        result["teacher_top_k_seconds"] = batches.seconds
    if from_disk:
        result["teacher_windows_scored"] = scored
    record = {**result, "finished": True, "settings": settings, "history": history}
    checkpoint.write_json(
        os.path.join(out_dir, RESULT_FILE), record, "final:" + RESULT_FILE, num_steps
    )
    return result
