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

import contextlib
import dataclasses
import json
import os
import time

import keras

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
from keras_guide.workflows.search import check_init
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
    text.check_overlap(*result)
    return result


@dataclasses.dataclass(frozen=True)
class ShapeSearch:
    """How `compress` chooses the student's shape (`search.search`'s settings).

    Attributes:
        target: int. The parameter count to aim at; `None` where `shape`
            names the student. Defaults to `None`.
        shape: dict. The student's sizes (`shapes.parse_shape`): no search;
            `None` to search. Defaults to `None`.
        calibration_tokens: int. Tokens of the training text the teacher's
            statistics are taken on. Defaults to `4096`.
        max_candidates: int. Shapes scored. Defaults to `5`.
        guide_options: dict. Keyword arguments of `keras_guide.guide`; those
            left out take the data-aware recipe. Defaults to `None`.
        limits: `search.RuntimeLimits`. What the student's `.gguf` must meet
            in llama.cpp, or `None`. Defaults to `None`.
        init: str. `"guide"`, or `"random"`: the student keeps its family's
            own initializers, drawn from the run's seed (no GUIDE option;
            the baseline every other start is measured against). Defaults
            to `"guide"`.
    """

    target: int = None
    shape: dict = None
    calibration_tokens: int = 4096
    max_candidates: int = 5
    guide_options: dict = None
    limits: object = None
    init: str = "guide"

    def __post_init__(self):
        # Refused here, before a run folder is touched.
        check_init(self.init, self.guide_options)

    def options(self):
        """The settings as `search.search`'s keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class About:
    """What the report says of a run beside its settings. None of it changes
    the student, so a resumed run need not match it.

    Attributes:
        teacher_name: str. How the teacher was named; `None` for its path.
            Defaults to `None`.
        held_out: str. How the held-out text was chosen. Defaults to `""`.
        import_seconds: float. Time spent loading the teacher. Defaults to
            `0.0`.
        devices: int. Devices the caller's `keras.distribution` spans.
            Defaults to `1`.
        model_parallel: int. How many of the `devices` each weight is split
            over. Defaults to `1`.
    """

    teacher_name: str = None
    held_out: str = ""
    import_seconds: float = 0.0
    devices: int = 1
    model_parallel: int = 1

    def record(self):
        """The report's entries on the held-out text and the devices."""
        return {
            "held_out": self.held_out,
            "devices": int(self.devices),
            "model_parallel": int(self.model_parallel),
            "processes": processes.process_count(),
        }


@run.owns_run_folder("out_dir")
def compress(
    teacher,
    teacher_path,
    windows,
    out_dir,
    shape_search,
    budget=Budget(),
    gguf_dtype="float32",
    exports=(),
    eval_windows=None,
    held_out_text=None,
    about=About(),
    resume=False,
    overwrite=False,
    verbose=True,
):
    """The whole run; see the module docstring.

    Args:
        teacher: keras_hub.models.CausalLM. The loaded teacher.
        teacher_path: str. Where it came from (a `.gguf` teacher gives a
            `.gguf` student, with the teacher's tokenizer keys).
        windows: tuple. `(train, held_out)` from `text.text_windows`.
        out_dir: str. The output folder.
        shape_search: ShapeSearch. The student's size (a `target` or a
            `shape`) and how its shape is chosen.
        budget: Budget. How the student trains. Defaults to `Budget()`.
        gguf_dtype: str or list. The student `.gguf` file's type, or a list
            of types (one file each: `student.gguf`, then
            `student.<type>.gguf`). Defaults to `"float32"`.
        exports: tuple. Further formats of `export.FORMATS` to write the
            student in (`"hf"`: a Hugging Face folder), beside the teacher's
            own. Defaults to `()`.
        eval_windows: int. Held-out windows scored (evenly spaced; the
            learning curve uses a quarter of them); `None` for all.
            Defaults to `None`.
        held_out_text: str. The held-out text as one string
            (`held_out_as_text`): teacher and student are scored on it with
            `llama-perplexity`'s protocol, and it is written to
            `out_dir/heldout.txt`; `None` skips that. Defaults to `None`.
        about: About. What the report says of the run beside its settings.
            Defaults to `About()`.
        resume: bool. Continue an interrupted run in `out_dir`. Defaults to
            `False`.
        overwrite: bool. Replace a previous run in `out_dir`. Defaults to
            `False`.
        verbose: bool. Print progress. Defaults to `True`.

    Returns:
        The report (a dict, also written to `out_dir/report.json`).
    """
    train, held = windows
    os.makedirs(out_dir, exist_ok=True)
    inputs.check_held_out(held)
    options = shape_search.options()
    settings = run.compress_settings(
        teacher, windows, budget, eval_windows=eval_windows, **options
    )
    run.same_run(out_dir, resume, settings)
    seconds = {"import": float(about.import_seconds)}
    training = _training_arguments(budget, eval_windows, teacher_path)
    student, record = _choose_student(
        teacher, windows, out_dir, budget, training, resume, seconds, verbose, **options
    )
    with _timed(seconds, "training"):
        student, result = _train(
            teacher, student, windows, out_dir, budget, training, resume, verbose
        )
    with _timed(seconds, "evaluation"):
        batches = text.eval_batches(*held, batch_size=8, max_windows=eval_windows)
        scores = evaluation.compare(teacher, student, batches)
    with _timed(seconds, "export"):
        description = _description(about.teacher_name or teacher_path, train)
        written = _export(
            student, out_dir, teacher_path, exports, gguf_dtype, description
        )
    report = {
        **_models(teacher, teacher_path, student, record, about),
        "evaluation": scores,
        **about.record(),
        "search": record,
        "recipe": _recipe(record, budget, train, result),
        "training": result,
        "seconds": seconds,
        "outputs": _outputs(out_dir, written),
    }
    llama_cpp_checks.add_measurements(
        report, teacher, student, written, held, held_out_text, out_dir, verbose
    )
    with open(os.path.join(out_dir, distill_lib.RESULT_FILE)) as f:
        history = json.load(f)["history"]
    plot(history, scores["teacher_loss"], os.path.join(out_dir, CURVE_FILE))
    write_report(out_dir, report)
    return report


@contextlib.contextmanager
def _timed(seconds, name):
    """`seconds[name]`: the seconds the block takes."""
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started


def _models(teacher, teacher_path, student, record, about):
    """The report's entries on the teacher and the student."""
    return {
        "teacher": {
            "path": str(teacher_path),
            "name": str(about.teacher_name or teacher_path),
            "parameters": shapes_lib.count_parameters(teacher),
        },
        "student": {
            "sizes": record["chosen"]["sizes"],
            "parameters": shapes_lib.count_parameters(student),
        },
    }


def _outputs(out_dir, written):
    """The files a run leaves, for the report: the student as trained, as
    exported, and the report's own."""
    return [
        os.path.join(out_dir, distill_lib.STUDENT_FILE),
        *written.values(),
        os.path.join(out_dir, REPORT_TEXT),
        os.path.join(out_dir, CURVE_FILE),
    ]


def _training_arguments(budget, eval_windows, teacher_path):
    """`distill`'s arguments for the run's `budget`: the learning curve is
    measured on a quarter of the held-out windows. The shape search's steps
    are not distill's (a candidate stops at them: `search.first_steps`)."""
    return dict(
        budget=dataclasses.replace(budget, search_steps=0),
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
            `max_candidates`, `guide_options`, `limits` and `init`.

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
            seed=budget.seed,
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
