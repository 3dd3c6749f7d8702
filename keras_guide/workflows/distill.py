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

import os
import time

import keras
import numpy as np

from keras_guide.adapters import backbone_of
from keras_guide.distillation import Distiller
from keras_guide.distillation import teacher_top_k
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.workflows import checkpoint
from keras_guide.workflows import run
from keras_guide.workflows import teacher_targets
from keras_guide.workflows import text
from keras_guide.workflows import training

# Its old home here, for benchmarks/.
from keras_guide.workflows.run.budget import distiller_arguments  # noqa: F401

STUDENT_FILE = "student.keras"
RESULT_FILE = "distill.json"
# What a run writes into its `out_dir`: a previous run is any of them.
OUTPUTS = (STUDENT_FILE, RESULT_FILE, "checkpoint", teacher_targets.FOLDER)


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


def check_output(out_dir, resume=False, overwrite=False):
    """Checks `out_dir` for a distill run before anything is loaded or
    trained: `run.check_run_folder` with this run's outputs, a `resume` only
    into a run that can continue. Changes nothing but creating the folder
    and taking it for this process (a folder another running process owns
    is refused, naming its pid).

    Args:
        out_dir: str. The run folder.
        resume: bool. Continue the run in `out_dir`. Defaults to `False`.
        overwrite: bool. Replace the run in `out_dir`. Defaults to `False`.

    Returns:
        The paths of a previous run's outputs in `out_dir` (what `distill`
        with `overwrite=True` replaces, once its own checks have passed).

    Raises:
        ValueError: `out_dir` is a file or not writable, is owned by another
            running process, holds a previous run and neither `resume` nor
            `overwrite` is set, or both are.
        checkpoint.ResumeError: `resume` into a folder without a complete
            checkpoint, or into a finished run.
    """
    return run.check_run_folder(
        out_dir,
        run.folder_outputs(out_dir, OUTPUTS),
        resume=resume,
        overwrite=overwrite,
        resumable=_check_resumable,
    )


def _check_resumable(out_dir):
    """Refuses a `resume` into a finished run, or into one with neither a
    complete checkpoint nor stored teacher targets (naming each torn set)."""
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


def seed_dropout(model, seed):
    """Sets `model`'s dropout seed states from `seed` alone, so the masks do
    not depend on what the process created before the model."""
    for i, variable in enumerate(checkpoint.seed_states(model)):
        first = int(np.random.default_rng([int(seed), i]).integers(1, 2**30))
        variable.assign(np.asarray([first, 0]).astype(variable.dtype))


def budget_from_keywords(
    num_steps=1000,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=None,
    kd_options=None,
    checkpoint_every=200,
    seed=0,
):
    """The `run.Budget` that `distill`'s budget keywords describe.

    Args:
        num_steps: int. Optimizer steps. Defaults to 1000.
        batch_size: int. Windows per step. Defaults to 16.
        learning_rate: float. The peak learning rate. Defaults to 1e-3.
        warmup_steps: int. Warm-up steps; `None` for a tenth of the steps.
            Defaults to `None`.
        kd_options: dict. The KD setting (`run.Budget.kd`); `None` for the
            `Distiller`'s defaults, `False` for cross-entropy alone.
            Defaults to `None`.
        checkpoint_every: int. Steps between checkpoints. Defaults to 200.
        seed: int. Data order, dropout and Keras' random state. Defaults
            to 0.

    Returns:
        A `run.Budget`.
    """
    if kd_options is False:
        kd = None
    else:
        kd = dict(kd_options or {})
    return run.Budget(
        steps=num_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        kd=kd,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )


def _budget(budget, keywords):
    """`budget`, or the budget `distill`'s keywords describe.

    Raises:
        TypeError: both, or a keyword `budget_from_keywords` does not take.
    """
    if budget is None:
        return budget_from_keywords(**keywords)
    if keywords:
        raise TypeError(
            "Pass `budget` or its keywords, not both. Received: "
            f"{', '.join(sorted(keywords))} with budget={budget!r}"
        )
    return budget


def _teacher_batches(teacher, windows, out_dir, budget, settings, teacher_path, reuse):
    """The training batches, with the teacher's stored top-k targets when the
    KD setting asks for them: on disk (`teacher_targets.DiskTargets`,
    computed before training from `"targets_from"`) or in memory
    (`StoredTeacherBatches`)."""
    batches = text.Batches(*windows[0], batch_size=budget.batch_size, seed=budget.seed)
    kd = budget.kd or {}
    top_k, source = kd.get("top_k"), kd.get("targets_from")
    if budget.kd:
        teacher_targets.check_source(source, teacher_path, top_k)
    if top_k and source:
        scorer = (
            teacher_targets.LlamaCppScorer(teacher_path, windows[0][0].shape[1] - 1)
            if source == "llama.cpp"
            else teacher_targets.KerasScorer(teacher, budget.batch_size)
        )
        return teacher_targets.DiskTargets(
            batches,
            scorer,
            os.path.join(out_dir, teacher_targets.FOLDER),
            top_k,
            settings["temperature"],
            budget.steps,
            source,
            settings["teacher"],
            settings["data"],
            reuse=reuse,
        )
    if top_k:
        return StoredTeacherBatches(
            batches, teacher, top_k, settings["temperature"], budget.steps
        )
    return batches


def _compiled(teacher, student, budget):
    """The model that trains `student`, compiled with the run's optimizer:
    a `Distiller`, or for cross-entropy alone the student's own graph."""
    optimizer = training.adamw(budget.learning_rate, budget.steps, budget.warmup)
    arguments = run.distiller_arguments(budget.kd)
    if arguments is None:
        # The student's own graph, sharing its weights, without the task's
        # preprocessor (which would tokenize the token ids again).
        model = keras.Model(student.inputs, student.outputs)
        model.compile(optimizer=optimizer, loss=training.causal_lm_loss())
    else:
        model = Distiller(teacher, student, **arguments)
        model.compile(optimizer=optimizer)
    return model, optimizer


def _checkpointer(out_dir, student, optimizer, settings, start_step, end):
    """`training.train`'s `on_eval`: a checkpoint every `checkpoint_every`
    steps, at the run's last step and at `end`."""
    directory = checkpoint.checkpoint_dir(out_dir)
    num_steps = settings["num_steps"]

    def save_checkpoint(step, _loss):
        if step == start_step or (
            step % settings["checkpoint_every"] and step not in (num_steps, end)
        ):
            return
        checkpoint.save(directory, student, optimizer, step, num_steps, settings)

    return save_checkpoint


def _start(student, out_dir, budget, settings, resume, previous):
    """Seeds the run; then restores the checkpoint a resume continues from, or
    removes the previous run's outputs. Returns the `checkpoint.Checkpoint`
    restored, or `None`."""
    keras.utils.set_random_seed(int(budget.seed))
    seed_dropout(student, budget.seed)
    if resume:
        return checkpoint.restore(checkpoint.checkpoint_dir(out_dir), student, settings)
    run.remove_outputs(previous)
    return None


def _stored_targets(batches, scored):
    """What the result says of the teacher's stored targets: the time spent
    storing them and, on disk, the windows this process scored."""
    if not isinstance(batches, (StoredTeacherBatches, teacher_targets.DiskTargets)):
        return {}
    stored = {"teacher_top_k_seconds": batches.seconds}
    if scored is not None:
        stored["teacher_windows_scored"] = scored
    return stored


def _finish(out_dir, teacher, held, student, history, settings, start_step, stored):
    """Writes `student.keras`, then `distill.json` (which marks the run
    finished); returns the result: the losses, the steps and time, and
    `stored` (`_stored_targets`)."""
    num_steps = settings["num_steps"]
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
        **stored,
    }
    record = {**result, "finished": True, "settings": settings, "history": history}
    checkpoint.write_json(
        os.path.join(out_dir, RESULT_FILE), record, "final:" + RESULT_FILE, num_steps
    )
    return result


@run.owns_run_folder("out_dir")
def distill(
    teacher,
    student,
    windows,
    out_dir,
    budget=None,
    *,
    resume=False,
    overwrite=False,
    settings_extra=None,
    verbose=True,
    eval_windows=None,
    teacher_path=None,
    stop_step=None,
    **budget_keywords,
):
    """Trains `student` in place with the `Distiller` (CE + KD) on tokenized text.

    Writes checkpoints in `checkpoint.checkpoint_dir(out_dir)` every
    `budget.checkpoint_every` steps and at the end, then
    `out_dir/student.keras` and `out_dir/distill.json` (the result and the
    history).

    Args:
        teacher: keras.Model. A causal LM over the student's vocabulary.
        student: keras.Model. The initial student, also when resuming (its
            identity is checked; the checkpoint's weights are then loaded
            into it).
        windows: tuple. `(train, held_out)` windows from `text.text_windows`.
        out_dir: str. The output folder.
        budget: run.Budget. The steps, batch size, learning rate, warm-up,
            KD setting (`budget.kd`: `{"temperature": τ,
            "student_loss_weight": α}` for the `Distiller`, with `"top_k": k`
            to distil from the teacher's stored top-k logits
            (`StoredTeacherBatches`), with `"targets_from": "llama.cpp"` or
            `"keras"` computed before training by llama.cpp from
            `teacher_path` or by the Keras teacher and stored in
            `out_dir/teacher_targets/` (`teacher_targets.DiskTargets`); or
            `None`: cross-entropy on the text alone, the teacher never run),
            checkpoint interval and seed (the data order, the dropout masks
            and Keras' global random state). Defaults to `None`: the budget
            `budget_keywords` describe.
        resume: bool. Continue the run in `out_dir` from its newest complete
            checkpoint (see the module docstring for what must match).
            Defaults to `False`.
        overwrite: bool. Replace a previous run's outputs in `out_dir`.
            Defaults to `False`.
        settings_extra: dict. More settings a resume must match (the command
            line adds how the models are distributed). Defaults to `None`.
        verbose: bool. Progress bar, and which checkpoint a resume starts
            from. Defaults to `True`.
        eval_windows: int. Evaluate on this many held-out windows, evenly
            spaced. Defaults to `None`: all.
        teacher_path: str. The teacher's `.gguf` file, for targets from
            llama.cpp. Defaults to `None`.
        stop_step: int. Stop after this step with a checkpoint there (a
            `resume` continues it), writing no final file. Defaults to
            `None`: train to the budget's last step.
        **budget_keywords: without `budget`, the budget as keywords
            (`budget_from_keywords`: `num_steps=1000`, `batch_size=16`,
            `learning_rate=1e-3`, `warmup_steps=None`, `kd_options=None`,
            `checkpoint_every=200`, `seed=0`).

    Returns:
        dict with `held_out_loss`, `teacher_loss`, `steps`, `start_step`,
        `train_seconds`, `tokens`; with `top_k`, `teacher_top_k_seconds`
        (the time spent storing the targets, over every process of the run)
        and, with `targets_from`, `teacher_windows_scored` (by this process).
        Stopped at `stop_step`: `{"stopped_at", "held_out_loss",
        "train_seconds", "tokens"}`.

    Raises:
        ValueError: a budget out of range, or an `out_dir` that cannot be
            written, is owned by another running process (`out_dir` is this
            run's for the call: `run.lock_run_folder`), or holds a run it
            was not asked to resume or overwrite.
        checkpoint.ResumeError: nothing to resume, a finished run, or
            settings that differ from the checkpoint's (each listed).
        TypeError: both `budget` and its keywords, or an unknown keyword.
    """
    budget = _budget(budget, budget_keywords)
    previous = check_output(out_dir, resume, overwrite)
    checkpoint.remove_temporaries(out_dir)
    settings = run.run_settings(teacher, student, windows, budget, settings_extra)
    batches = _teacher_batches(
        teacher, windows, out_dir, budget, settings, teacher_path, reuse=resume
    )
    held = text.eval_batches(
        *windows[1], batch_size=max(budget.batch_size, 16), max_windows=eval_windows
    )
    found = _start(student, out_dir, budget, settings, resume, previous)
    from_disk = isinstance(batches, teacher_targets.DiskTargets)
    scored = batches.fill(verbose=verbose) if from_disk else None
    start_step = found.step if found else 0
    if found and verbose:
        print(f"Resuming from checkpoint {found.describe()}")
    model, optimizer = _compiled(teacher, student, budget)
    if found:
        checkpoint.restore_optimizer(found, optimizer, student.trainable_variables)
    end = budget.steps if stop_step is None else stop_step
    history = training.train(
        model,
        batches,
        end,
        start_step=start_step,
        evaluate=lambda _: heldout_cross_entropy(student, held),
        eval_every=max(1, min(budget.checkpoint_every, budget.steps)),
        verbose=verbose,
        label=f"Distilling {end - start_step} steps",
        on_eval=_checkpointer(out_dir, student, optimizer, settings, start_step, end),
    )
    if end < budget.steps:
        return {
            "stopped_at": end,
            "held_out_loss": history["eval_loss"][-1],
            "train_seconds": history["train_seconds"],
            "tokens": history["tokens"],
        }
    stored = _stored_targets(batches, scored)
    return _finish(
        out_dir, teacher, held, student, history, settings, start_step, stored
    )
