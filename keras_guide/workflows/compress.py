"""`keras-guide compress`: a teacher and a size in, a smaller model out,
measured against the teacher and written where the teacher ran.

1. Shape (`search.py`): candidate shapes of about the target size
   (`shapes.py`), each guided from one calibration pass of the teacher and
   scored by its cross-entropy on a few training windows right after
   initialization, or after the run's first steps; the lowest wins (or the
   shape `--size` names).
2. Recipe: data-aware GUIDE from calibration text taken from the training
   text (never the evaluation text), then distillation (`distill.py`:
   checkpoints, `--resume`, a warm-up then a cosine decay of the learning
   rate to a tenth of its peak).
3. Report: teacher and student on held-out text (loss, perplexity, KL, top-1
   agreement), sizes, llama.cpp speed of both when written as GGUF, where
   the time went, a learning curve; `report.json`, `report.md`,
   `curve.png` (`report.py`).
4. The student as the teacher came: `student.gguf` for a `.gguf` teacher, a
   KerasHub preset folder otherwise, and always `student.keras`.

Everything the run decides before training (`search.json`, the initial
student) is written first, so a resumed run trains the same student.
"""

import json
import os
import time

import keras
import numpy as np

from keras_guide import evaluation
from keras_guide.distribution import processes
from keras_guide.workflows import checkpoint
from keras_guide.workflows import distill as distill_lib
from keras_guide.workflows import export as export_lib
from keras_guide.workflows import inputs
from keras_guide.workflows import llama_cpp_checks
from keras_guide.workflows import run
from keras_guide.workflows import shapes as shapes_lib
from keras_guide.workflows import teacher_targets
from keras_guide.workflows import text
from keras_guide.workflows.report import CURVE_FILE
from keras_guide.workflows.report import REPORT_FILE
from keras_guide.workflows.report import REPORT_TEXT
from keras_guide.workflows.report import plot
from keras_guide.workflows.report import render  # noqa: F401 (the command's)
from keras_guide.workflows.report import write_report
from keras_guide.workflows.run import RECIPE  # noqa: F401 (commands/, benchmarks/)
from keras_guide.workflows.run import Budget
from keras_guide.workflows.search import INITIAL_FILE
from keras_guide.workflows.search import SEARCH_DIR
from keras_guide.workflows.search import continue_from_search
from keras_guide.workflows.search import first_steps
from keras_guide.workflows.search import search

SEARCH_FILE = "search.json"
OUTPUTS = (
    run.RUN_FILE,
    SEARCH_FILE,
    SEARCH_DIR,
    INITIAL_FILE,
    REPORT_FILE,
    REPORT_TEXT,
    CURVE_FILE,
    llama_cpp_checks.HELD_OUT_TEXT,
    "student.gguf",
    "student_preset",
    "student_hf",
    *distill_lib.OUTPUTS,
)


def held_out_as_text(train, held_out=None):
    """The held-out documents of `text.split_documents` as one text, a blank
    line between documents."""
    return "\n\n".join(text.split_documents(train, held_out)[1])


def parse_size(size, teacher):
    """`--size` for `teacher`: `(target, None)` for a parameter count or share,
    `(None, sizes)` for a shape (`shapes.parse_parameter_count`,
    `shapes.parse_shape`)."""
    target = shapes_lib.parse_parameter_count(
        size, shapes_lib.count_parameters(teacher)
    )
    return target, None if target is not None else shapes_lib.parse_shape(size, teacher)


def windows(teacher, train, held_out=None, sequence_length=128):
    """The training and held-out windows of text files in `teacher`'s own
    tokens (`text.text_windows`), checked: the tokenizer fits the teacher,
    the held-out text is not empty and does not repeat the training text.

    Args:
        teacher: the loaded teacher.
        train: training text files or folders.
        held_out: held-out text files or folders, or `None` to hold back
            part of `train`.
        sequence_length: tokens per window.
    """
    encoder = inputs.get_encoder("auto", teacher)
    text.check_vocabulary(encoder, teacher, "teacher")
    result = text.text_windows(train, encoder, sequence_length, held_out)
    inputs.check_held_out(result[1], given=held_out is not None)
    check_overlap(*result)
    return result


def _run_hashes(windows, length):
    """A hash of every `length`-token run of the windows' real tokens, read in
    order (windows are cut from documents in order)."""
    tokens, mask = windows
    stream = tokens[mask.astype(bool)].astype(np.uint64)
    count = len(stream) - length + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    hashes = np.zeros(count, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(length):
            hashes = hashes * np.uint64(1_000_003) + stream[j : j + count]
    return hashes


def check_overlap(train, held, length=16, limit=0.05):
    """Refuses evaluation text that repeats the training text.

    Every `length`-token run of the held-out text is looked up among the
    training text's runs.

    Returns:
        The share of held-out runs found in the training text.

    Raises:
        ValueError: more than `limit` of them are.
    """
    held_runs = _run_hashes(held, length)
    if not len(held_runs):
        return 0.0
    share = float(np.isin(held_runs, _run_hashes(train, length)).mean())
    if share > limit:
        raise ValueError(
            f"{share:.0%} of the evaluation text's {length}-token runs also occur "
            "in the training text: the evaluation would measure memory, not "
            "generalization. Pass evaluation text (--eval) that training never "
            "sees, or leave it out to hold back a share of --text."
        )
    return share


@run.owns_run_folder("out_dir")
def compress(
    teacher,
    teacher_path,
    windows,
    out_dir,
    target=None,
    shape=None,
    budget=Budget(),
    calibration_tokens=4096,
    max_candidates=5,
    gguf_dtype="float32",
    held_out="",
    resume=False,
    overwrite=False,
    import_seconds=0.0,
    eval_windows=None,
    teacher_name=None,
    guide_options=None,
    held_out_text=None,
    exports=(),
    verbose=True,
    devices=1,
    model_parallel=1,
    limits=None,
):
    """The whole run; see the module docstring.

    Args:
        teacher: the loaded teacher (a KerasHub causal LM).
        teacher_path: where it came from (a `.gguf` teacher gives a `.gguf`
            student, with the teacher's tokenizer keys).
        windows: `(train, held_out)` from `text.text_windows`.
        out_dir: the output folder.
        target: the parameter count to aim at, or `shape`: sizes.
        budget: a `Budget`.
        calibration_tokens: tokens of the training text for calibration.
        max_candidates: shapes scored.
        gguf_dtype: the student `.gguf` file's type, or a list of types (one
            file each: `student.gguf`, then `student.<type>.gguf`).
        held_out: how the held-out text was chosen (for the report).
        eval_windows: held-out windows scored (evenly spaced; the learning
            curve uses a quarter of them); `None` for all.
        resume: continue an interrupted run in `out_dir`.
        overwrite: replace a previous run in `out_dir`.
        import_seconds: time spent loading the teacher (for the report).
        teacher_name: how the teacher was named (default: its path).
        guide_options: keyword arguments of `keras_guide.guide`; those left
            out take the data-aware recipe.
        held_out_text: the held-out text as one string (`held_out_as_text`):
            teacher and student are scored on it with `llama-perplexity`'s
            protocol, and it is written to `out_dir/heldout.txt`; `None`
            skips that.
        exports: further formats of `export.FORMATS` to write the student
            in (`"hf"`: a Hugging Face folder), beside the teacher's own.
        devices: how many devices the run's `keras.distribution.DataParallel`
            spans (the caller's scope), for the report; not a setting a
            resume must match, since the student does not depend on it.
            Defaults to 1.
        model_parallel: how many of the `devices` each weight is split over
            (the caller's `ModelParallel`), for the report. Defaults to 1.
        limits: a `search.RuntimeLimits` the student's `.gguf` must meet in
            llama.cpp, or `None`. Defaults to `None`.

    Returns:
        The report (a dict, also written to `out_dir/report.json`).
    """
    seconds = {"import": float(import_seconds)}
    train, held = windows
    os.makedirs(out_dir, exist_ok=True)
    inputs.check_held_out(held)
    run.same_run(
        out_dir,
        resume,
        run.compress_settings(
            teacher,
            windows,
            budget,
            target=target,
            shape=shape,
            calibration_tokens=calibration_tokens,
            max_candidates=max_candidates,
            guide_options=guide_options,
            eval_windows=eval_windows,
            limits=limits,
        ),
    )
    training = _training_arguments(budget, eval_windows, teacher_path)
    student, record = _choose_student(
        teacher,
        windows,
        out_dir,
        budget,
        training,
        resume,
        seconds,
        verbose,
        target=target,
        shape=shape,
        calibration_tokens=calibration_tokens,
        max_candidates=max_candidates,
        guide_options=guide_options,
        limits=limits,
    )
    started = time.perf_counter()
    student, result = _train(
        teacher, student, windows, out_dir, budget, training, resume, verbose
    )
    seconds["training"] = time.perf_counter() - started
    started = time.perf_counter()
    batches = text.eval_batches(*held, batch_size=8, max_windows=eval_windows)
    scores = evaluation.compare(teacher, student, batches)
    seconds["evaluation"] = time.perf_counter() - started
    started = time.perf_counter()
    written = _export(
        student,
        out_dir,
        teacher_path,
        exports,
        gguf_dtype,
        _description(teacher_name or teacher_path, train),
    )
    seconds["export"] = time.perf_counter() - started
    report = {
        "teacher": {
            "path": str(teacher_path),
            "name": str(teacher_name or teacher_path),
            "parameters": shapes_lib.count_parameters(teacher),
        },
        "student": {
            "sizes": record["chosen"]["sizes"],
            "parameters": shapes_lib.count_parameters(student),
        },
        "evaluation": scores,
        "held_out": held_out,
        "devices": int(devices),
        "model_parallel": int(model_parallel),
        "processes": processes.process_count(),
        "search": record,
        "recipe": _recipe(record, budget, train, result),
        "training": result,
        "seconds": seconds,
        "outputs": [
            os.path.join(out_dir, distill_lib.STUDENT_FILE),
            *written.values(),
            os.path.join(out_dir, REPORT_TEXT),
            os.path.join(out_dir, CURVE_FILE),
        ],
    }
    llama_cpp_checks.add_runtime_checks(report, student, teacher_path, written, held)
    if held_out_text:
        started = time.perf_counter()
        report["llama_perplexity"] = llama_cpp_checks.perplexity(
            teacher, student, teacher_path, written, held_out_text, out_dir, verbose
        )
        report["outputs"].append(os.path.join(out_dir, llama_cpp_checks.HELD_OUT_TEXT))
        seconds["perplexity protocol"] = time.perf_counter() - started
    with open(os.path.join(out_dir, distill_lib.RESULT_FILE)) as f:
        history = json.load(f)["history"]
    plot(history, scores["teacher_loss"], os.path.join(out_dir, CURVE_FILE))
    write_report(out_dir, report)
    return report


def _training_arguments(budget, eval_windows, teacher_path):
    """`distill`'s arguments for the run's `budget`: the learning curve is
    measured on a quarter of the held-out windows."""
    return dict(
        num_steps=budget.steps,
        batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        warmup_steps=budget.warmup_steps,
        kd_options=budget.kd if budget.kd is not None else False,
        checkpoint_every=budget.checkpoint_every,
        seed=budget.seed,
        eval_windows=max(1, eval_windows // 4) if eval_windows else None,
        teacher_path=teacher_path,
    )


def _choose_student(
    teacher, windows, out_dir, budget, training, resume, seconds, verbose, **options
):
    """The student the run trains, guided: the one a stopped run chose
    (`search.json` and the initial student in `out_dir`), else `search`'s
    choice, written before training so that a resume trains the same one.

    Args:
        options: `search`'s `target`, `shape`, `calibration_tokens`,
            `max_candidates`, `guide_options` and `limits`.

    Returns:
        `(student, search record)`; `seconds` gets the calibration's and the
        search's time.
    """
    search_path = os.path.join(out_dir, SEARCH_FILE)
    initial_path = os.path.join(out_dir, INITIAL_FILE)
    started = time.perf_counter()
    if resume and os.path.exists(search_path) and os.path.exists(initial_path):
        with open(search_path) as f:
            record = json.load(f)
        student = keras.saving.load_model(initial_path)
        if verbose:
            print(
                f"Resuming: the student chosen before, "
                f"{shapes_lib.Shape(record['chosen']['sizes'], 0).describe()}"
            )
    else:
        if verbose:
            print("Choosing the student's shape")
        student, record = search(
            teacher,
            windows[0],
            verbose=verbose,
            **options,
            **first_steps(teacher, windows, out_dir, budget, training),
        )
        record["search_steps"] = budget.search_steps
        if budget.search_steps:
            student = continue_from_search(out_dir, record)
        checkpoint.write_atomic(initial_path, student.save)
        checkpoint.write_json(search_path, record)
    seconds["calibration"] = record["calibration"]["seconds"]
    seconds["candidate search"] = (
        time.perf_counter() - started - record["calibration"]["seconds"]
    )
    return student, record


def _train(teacher, student, windows, out_dir, budget, training, resume, verbose):
    """Distills `student` for the budget, continuing from `out_dir`'s
    checkpoint (or the search's first steps) where there is one.

    Returns:
        `(trained student, distill's result)`; a finished training is not
        repeated.
    """
    finished = _finished_training(out_dir, verbose) if resume else None
    if finished:
        path = os.path.join(out_dir, distill_lib.STUDENT_FILE)
        return keras.saving.load_model(path), finished
    # Stored teacher targets alone (a run stopped while storing them) resume
    # too: their windows are not scored again.
    resuming = (resume or budget.search_steps > 0) and (
        os.path.exists(checkpoint.checkpoint_dir(out_dir))
        or os.path.exists(
            os.path.join(out_dir, teacher_targets.FOLDER, teacher_targets.MANIFEST)
        )
    )
    result = distill_lib.distill(
        teacher,
        student,
        windows,
        out_dir,
        resume=resuming,
        overwrite=not resuming,
        verbose=verbose,
        **training,
    )
    return student, result


def _export(student, out_dir, teacher_path, exports, gguf_dtype, description):
    """Writes the student as the teacher came (`.gguf` for a `.gguf` teacher,
    else a KerasHub preset) and in `exports`' further formats.

    Returns:
        `export.export`'s `{format: path}`.
    """
    is_gguf = str(teacher_path).endswith(".gguf")
    formats = (
        ["gguf"]
        if is_gguf
        else (["preset"] if hasattr(student, "save_to_preset") else [])
    )
    return export_lib.export(
        student,
        os.path.join(out_dir, "student"),
        list(dict.fromkeys(formats + list(exports))),
        gguf_dtype=gguf_dtype,
        metadata_from=teacher_path if is_gguf else None,
        overwrite=True,
        description=description,
    )


def _recipe(record, budget, train, result):
    """The report's account of how the student was made."""
    return {
        **record["recipe"],
        "kd": budget.kd,
        "steps": budget.steps,
        "batch_size": budget.batch_size,
        "sequence_length": int(train[0].shape[1] - 1),
        "tokens": result["tokens"],
        "learning_rate": budget.learning_rate,
        "schedule": "linear warm-up, cosine to a tenth",
        "seed": budget.seed,
    }


def _description(teacher, train):
    """What the student's files say of it: the context it was trained at and
    where its measurements are."""
    length = int(train[0].shape[1] - 1)
    return (
        f"A student of {os.path.basename(str(teacher))} made by keras-guide "
        f"compress (GUIDE + distillation), trained on {length}-token windows; "
        "measured with llama-perplexity's protocol at "
        f"{' and '.join(map(str, llama_cpp_checks.PERPLEXITY_CONTEXTS))} tokens of "
        "context, in its run's report.json."
    )


def _finished_training(out_dir, verbose=1):
    """The result of a finished training in `out_dir`, or `None` (also when
    the trained student is gone: then the training runs again)."""
    path = os.path.join(out_dir, distill_lib.RESULT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    if not record.get("finished"):
        return None
    student = os.path.join(out_dir, distill_lib.STUDENT_FILE)
    if not os.path.exists(student):
        if verbose:
            print(
                f"{path} records a finished training, but {student} is missing: "
                "training again"
            )
        return None
    keys = (
        "held_out_loss",
        "teacher_loss",
        "steps",
        "start_step",
        "train_seconds",
        "tokens",
    )
    return {k: record[k] for k in keys}
