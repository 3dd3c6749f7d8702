"""`keras-guide compress`: a teacher and a size in, a smaller model out,
measured against the teacher and written where the teacher ran.

1. Shape: candidate shapes of about the target size (`shapes.py`), each
   guided from one calibration pass of the teacher and scored by its
   cross-entropy on a few training windows right after initialization; the
   lowest wins (or the shape `--size` names).
2. Recipe: data-aware GUIDE from calibration text taken from the training
   text (never the evaluation text), then distillation (`distill.py`:
   checkpoints, `--resume`, a warm-up then a cosine decay of the learning
   rate to a tenth of its peak).
3. Report: teacher and student on held-out text (loss, perplexity, KL, top-1
   agreement), sizes, llama.cpp speed of both when written as GGUF, where
   the time went, a learning curve; `report.json`, `report.md`,
   `curve.png`.
4. The student as the teacher came: `student.gguf` for a `.gguf` teacher, a
   KerasHub preset folder otherwise, and always `student.keras`.

Everything the run decides before training (`search.json`, the initial
student) is written first, so a resumed run trains the same student.
"""

import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np

from keras_guide import _files
from keras_guide import evaluation
from keras_guide.adapters import backbone_of
from keras_guide.distribution import check_sharding
from keras_guide.distribution import paused_distribution
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.guide import build_student
from keras_guide.guide import guide
from keras_guide.guide import options as options_lib
from keras_guide.workflows import checkpoint
from keras_guide.workflows import distill as distill_lib
from keras_guide.workflows import export as export_lib
from keras_guide.workflows import inputs
from keras_guide.workflows import shapes as shapes_lib
from keras_guide.workflows import teacher_targets
from keras_guide.workflows import text

SEARCH_FILE = "search.json"
# Each candidate's run of the first steps (`--search-steps`), removed after.
SEARCH_DIR = "search"
INITIAL_FILE = "initial_student.keras"
REPORT_FILE = "report.json"
REPORT_TEXT = "report.md"
CURVE_FILE = "curve.png"
# The held-out text as one file: what `llama-perplexity -f` reads to give the
# report's numbers again.
HELD_OUT_TEXT = "heldout.txt"
# The report's llama-perplexity contexts, and the tokens scored at each.
PERPLEXITY_CONTEXTS, PERPLEXITY_TOKENS = (512, 2048), 8192
OUTPUTS = (
    checkpoint.RUN_FILE,
    SEARCH_FILE,
    SEARCH_DIR,
    INITIAL_FILE,
    REPORT_FILE,
    REPORT_TEXT,
    CURVE_FILE,
    HELD_OUT_TEXT,
    "student.gguf",
    "student_preset",
    "student_hf",
    *distill_lib.OUTPUTS,
)
# The distillation recipe: the live teacher's full distribution at τ = 1,
# weighted equally with the data's cross-entropy (README, "Distillation on
# real teachers").
RECIPE = {"temperature": 1.0, "student_loss_weight": 0.5}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long the student trains, and how.

    Attributes:
        steps: optimizer steps.
        batch_size: windows per step.
        learning_rate: the peak AdamW rate (warm-up, then cosine to a tenth).
        warmup_steps: steps of linear warm-up; `None` for a tenth.
        kd: `{"temperature": τ, "student_loss_weight": α}`, or `None` for
            cross-entropy alone (the teacher does not run during training).
        checkpoint_every: steps between checkpoints (and evaluations).
        seed: data order and dropout.
        search_steps: steps each candidate shape trains (the run's first
            steps, with its recipe) before the candidates are compared; the
            chosen one continues from them. 0 compares them right after
            guided initialization.
    """

    steps: int = 150
    batch_size: int = 8
    learning_rate: float = 2e-3
    warmup_steps: int = None
    kd: dict = dataclasses.field(default_factory=lambda: dict(RECIPE))
    checkpoint_every: int = 25
    seed: int = 0
    search_steps: int = 0


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


def _calibration(train, tokens):
    """The first windows of the training text holding `tokens` tokens."""
    windows, mask = train
    counts = np.cumsum(mask.sum(1))
    rows = int(np.searchsorted(counts, tokens)) + 1
    if counts[-1] < tokens:
        raise ValueError(
            f"The training text has {int(counts[-1])} tokens; calibration needs "
            f"{tokens} (--calibration-tokens). Pass more --text or ask for fewer."
        )
    return windows[:rows], mask[:rows]


def search(
    teacher,
    train,
    target=None,
    shape=None,
    calibration_tokens=4096,
    score_windows=8,
    max_candidates=5,
    guide_options=None,
    verbose=True,
    train_candidate=None,
    seen_rows=(),
):
    """Chooses the student: candidates guided from one calibration pass and
    scored on the training windows after the calibration ones.

    `guide_options` are keyword arguments of `keras_guide.guide`: those left
    out take the data-aware recipe; if none of them uses calibration text
    (a data-free guide), the teacher is not run on it.

    With `train_candidate`, a callable `(index, student) -> folder` that
    trains a guided candidate in place (the run's first steps), candidates
    are compared after it, on windows those steps did not see (`seen_rows`:
    the indices of `train` they used); the loss right after initialization
    is recorded too.

    Returns:
        `(student, record)`: the chosen, guided (or trained) student and what
        was tried (`candidates` with sizes, parameters, score, seconds and,
        when trained, `score_after_init` and `folder`; `chosen`;
        `calibration` tokens and seconds).
    """
    from keras_guide import calibration as calibration_lib

    guide_options = dict(guide_options or {})
    calibrated = options_lib.takes_calibration(guide_options)
    tokens, mask = _calibration(train, calibration_tokens)
    kept = [i for i in range(len(tokens), len(train[0])) if i not in set(seen_rows)]
    rest = train[0][kept], train[1][kept]
    if len(rest[0]) < 1:
        raise ValueError(
            "The training text has no window left after the "
            "calibration text to score candidates on."
        )
    backbone = teacher.backbone if hasattr(teacher, "backbone") else teacher
    started = time.perf_counter()
    batches = calibration_lib.calibration_batches(
        tokens, list(backbone.input.keys()), backbone.vocabulary_size
    )
    stats = calibration_lib.collect_statistics(teacher, batches) if calibrated else None
    calibration_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if shape is not None:
        counter = shapes_lib.count_parameters
        candidates = [shape]
    else:
        # Shapes are read from models built off the mesh (a mesh of
        # `ModelParallel` may not divide a reference model's sizes).
        with paused_distribution():
            candidates = shapes_lib.candidate_shapes(
                teacher, target, max_candidates, full_width=train_candidate is not None
            )
    candidates = _shardable(teacher, candidates)
    shape_seconds = time.perf_counter() - started
    scoring = text.eval_batches(*rest, batch_size=2, max_windows=score_windows)
    tried, best = [], None
    for candidate in candidates:
        started = time.perf_counter()
        given = not isinstance(candidate, shapes_lib.Shape)
        sizes = candidate if given else candidate.sizes
        student = build_student(teacher, **sizes)
        report = guide(teacher, student, calibration=stats, **guide_options)
        score = heldout_cross_entropy(student, scoring)
        parameters = counter(student) if given else candidate.parameters
        row = {
            "sizes": dict(sizes),
            "parameters": int(parameters),
            "score": float(score),
        }
        said = f"loss after init {score:.3f}"
        if train_candidate is not None:
            row["folder"] = train_candidate(len(tried), student)
            row["score_after_init"] = row["score"]
            score = row["score"] = float(heldout_cross_entropy(student, scoring))
            said += f", after its first steps {score:.3f}"
        row["seconds"] = time.perf_counter() - started
        tried.append(row)
        if verbose:
            print(
                f"  candidate {shapes_lib.Shape(sizes, parameters).describe()}: "
                f"{parameters:,} parameters, {said}"
            )
        if best is None or score < best[0]["score"]:
            best = (row, student, report)
        else:
            del student
    row, student, report = best
    record = {
        "candidates": tried,
        "chosen": row,
        "calibration": {
            "tokens": int(stats.tokens) if calibrated else 0,
            "seconds": calibration_seconds,
        },
        "shape_search_seconds": shape_seconds,
        "score_windows": int(min(score_windows, len(rest[0]))),
        "recipe": {
            "guide": {
                k: report.options[k]
                for k in ("projection", "select", "layer_map", "norm", "rescale")
            },
            "guide_recipe": report.recipe,
        },
    }
    return student, record


def _first_steps(teacher, windows, out_dir, budget, training):
    """`search`'s `train_candidate` and `seen_rows` for `budget.search_steps`
    (none for 0): each candidate trains the run's first steps, with its
    recipe, in its own run folder `out_dir/search/candidate-N/`."""
    if not budget.search_steps:
        return {}
    batches = text.Batches(*windows[0], batch_size=budget.batch_size, seed=budget.seed)
    seen = {int(i) for step in range(budget.search_steps) for i in batches.rows(step)}

    def train_candidate(index, student):
        folder = os.path.join(out_dir, SEARCH_DIR, f"candidate-{index}")
        os.makedirs(folder, exist_ok=True)
        # The guided weights, which the chosen one's training starts from.
        checkpoint.write_atomic(os.path.join(folder, INITIAL_FILE), student.save)
        distill_lib.distill(
            teacher,
            student,
            windows,
            folder,
            overwrite=True,
            verbose=False,
            stop_step=budget.search_steps,
            **training,
        )
        return folder

    return {"train_candidate": train_candidate, "seen_rows": seen}


def _continue_from_search(out_dir, record):
    """The chosen candidate's guided student; its checkpoint of the first
    steps becomes the run's, and the search's folders go."""
    folder = record["chosen"]["folder"]
    student = keras.saving.load_model(os.path.join(folder, INITIAL_FILE))
    target = checkpoint.checkpoint_dir(out_dir)
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.copytree(checkpoint.checkpoint_dir(folder), target)
    shutil.rmtree(os.path.join(out_dir, SEARCH_DIR))
    for row in record["candidates"]:
        row["folder"] = os.path.relpath(row["folder"], out_dir)
    return student


def _shardable(teacher, candidates):
    """The candidates whose weights the active `ModelParallel` mesh divides
    (all of them under any other distribution).

    Raises:
        ValueError: none is (the first one's reason, with the fix).
    """
    distribution = keras.distribution.distribution()
    if not isinstance(distribution, keras.distribution.ModelParallel):
        return candidates
    kept, reason = [], None
    for candidate in candidates:
        sizes = (
            candidate.sizes if isinstance(candidate, shapes_lib.Shape) else (candidate)
        )
        # The backbone alone: a task model cannot be built without memory.
        with paused_distribution(), keras.StatelessScope():
            plan = build_student(backbone_of(teacher), **sizes)
        try:
            check_sharding(distribution, {"student": plan})
            kept.append(candidate)
        except ValueError as error:
            reason = reason or str(error)
    if not kept:
        raise ValueError(
            f"No student shape of this size fits --model-parallel's mesh: {reason}"
        )
    return kept


def _plot(history, teacher_loss, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(history["train_steps"], history["train_loss"], label="training loss")
    axis.plot(
        history["eval_steps"],
        history["eval_loss"],
        "o-",
        label="held-out loss (student)",
    )
    axis.axhline(teacher_loss, color="k", linestyle="--", label="teacher, held out")
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy (nats/token)")
    axis.legend()
    figure.tight_layout()
    _files.write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)


def _write_report(out_dir, report):
    checkpoint.write_json(os.path.join(out_dir, REPORT_FILE), report)
    _files.write_text(os.path.join(out_dir, REPORT_TEXT), render(report))


def render(report):
    """The report as Markdown."""
    e = report["evaluation"]
    lines = [
        f"# {report['teacher'].get('name', report['teacher']['path'])} compressed",
        "",
        "| | teacher | student |",
        "|---|---|---|",
        f"| parameters | {report['teacher']['parameters']:,} | "
        f"{report['student']['parameters']:,} "
        f"({report['student']['parameters'] / report['teacher']['parameters']:.1%}) |",
        f"| held-out loss (nats/token) | {e['teacher_loss']:.3f} | "
        f"{e['student_loss']:.3f} |",
        f"| perplexity | {e['teacher_perplexity']:.2f} | "
        f"{e['student_perplexity']:.2f} |",
        f"| KL(teacher ‖ student), nats/token | | {e['kl']:.3f} |",
        f"| top-1 agreement with the teacher | | {e['top1_agreement']:.1%} |",
    ]
    speed = report.get("llama_cpp")
    parity = (speed or {}).get("parity") or {}
    if speed and "error" in speed:
        lines.append(f"| llama.cpp speed | not measured: {speed['error']} | |")
    elif speed:
        t, s = speed["teacher"], speed["student"]
        lines += [
            f"| llama.cpp prompt tokens/s | {t['prompt_tokens_per_s']:.0f} | "
            f"{s['prompt_tokens_per_s']:.0f} |",
            f"| llama.cpp generated tokens/s | {t['generate_tokens_per_s']:.1f} | "
            f"{s['generate_tokens_per_s']:.1f} |",
            f"| llama.cpp peak memory (MiB) | {t['peak_rss_mib']:.0f} | "
            f"{s['peak_rss_mib']:.0f} |",
            f"| file (MiB) | {t['file_mib']:.0f} | {s['file_mib']:.0f} |",
        ]
    if "kl" in parity:
        lines.append(
            f"| the student's .gguf in llama.cpp vs the Keras student | | KL "
            f"{parity['kl']:.2g} nats/token, top-1 {parity['top1_agreement']:.1%} "
            f"({parity['tokens']} tokens) |"
        )
    lines += _perplexity_rows(report.get("llama_perplexity"))
    lines += _gguf_types_rows(report)
    search = report["search"]
    steps = search.get("search_steps", 0)
    devices = report.get("devices", 1)
    groups = devices // report.get("model_parallel", 1)
    how = (
        f" (model parallel: keras.distribution.ModelParallel, each weight "
        f"split over {devices // groups} of them and each batch over "
        f"{groups} groups)"
        if groups < devices
        else " (data parallel: keras.distribution.DataParallel, each batch split "
        "over them)"
        if devices > 1
        else ""
    )
    lines += [
        "",
        f"Held-out text: {e['tokens']:,} tokens ({report['held_out']}).",
        "",
        f"Devices: {devices}{how}",
        "",
        "## Shape",
        "",
        "| candidate | parameters | loss after init | "
        + (f"after {steps} steps | " if steps else "")
        + "seconds |",
        "|---|---|---|" + ("---|" if steps else "") + "---|",
    ]
    for row in search["candidates"]:
        mark = " **(chosen)**" if row == search["chosen"] else ""
        described = ", ".join(f"{k}={v}" for k, v in row["sizes"].items())
        scores = (
            f"{row['score_after_init']:.3f} | {row['score']:.3f}"
            if steps
            else f"{row['score']:.3f}"
        )
        lines.append(
            f"| {described}{mark} | {row['parameters']:,} | {scores} | "
            f"{row['seconds']:.1f} |"
        )
    lines += [
        "",
        (
            f"The lowest cross-entropy after the run's first {steps} steps (on "
            "training windows neither the calibration nor those steps used) "
            "wins; the chosen student continues from them."
            if steps
            else "The lowest cross-entropy right after guided initialization "
            "(on training windows the calibration did not use) wins."
        ),
        "",
        "## Recipe",
        "",
        "```",
        json.dumps(report["recipe"], indent=1),
        "```",
        "",
        "## Where the time went",
        "",
        "| stage | seconds | share |",
        "|---|---|---|",
    ]
    total = sum(report["seconds"].values())
    for stage, seconds in report["seconds"].items():
        lines.append(f"| {stage} | {seconds:.1f} | {seconds / total:.1%} |")
    lines += ["", "Outputs: " + ", ".join(report["outputs"]), ""]
    return "\n".join(lines)


def _gguf_types_rows(report):
    """A table of the student's GGUF files where there are several: size,
    llama.cpp speed and memory, and the protocol's figures at its first
    context."""
    speeds = report.get("llama_cpp") or {}
    files = [name for name in speeds if name.startswith("student")]
    if len(files) < 2:
        return []
    contexts = (report.get("llama_perplexity") or {}).get("contexts", {})
    context, figures = next(
        ((c, f) for c, f in contexts.items() if "skipped" not in f), (None, {})
    )
    lines = [
        "",
        "## The student's GGUF files",
        "",
        f"| file | MiB | prompt / generated tokens/s | peak MiB | PPL, KL from "
        f"the teacher, same top p ({context}-token chunks) |",
        "|---|---|---|---|---|",
    ]
    for name in files:
        speed, f = speeds[name], figures.get(name)
        quality = (
            f"{f['perplexity']:.2f}, {f['vs_base']['kl']:.3f}, "
            f"{f['vs_base']['same_top']:.1%}"
            if f
            else ""
        )
        label = "student.gguf" if name == "student" else f"{name}.gguf"
        lines.append(
            f"| {label} | {speed['file_mib']:.1f} | "
            f"{speed['prompt_tokens_per_s']:.0f} / "
            f"{speed['generate_tokens_per_s']:.1f} | "
            f"{speed['peak_rss_mib']:.0f} | {quality} |"
        )
    return lines


def _perplexity_rows(measured):
    """The report's rows for `llama-perplexity`'s protocol."""
    if not measured:
        return []
    if "error" in measured:
        return [
            f"| perplexity, llama-perplexity's protocol | not measured: "
            f"{measured['error']} | |"
        ]
    where, lines, kl = measured["runtime"], [], None
    for context, figures in measured["contexts"].items():
        label = f"{where} perplexity, {int(context):,}-token chunks"
        if "skipped" in figures:
            lines.append(f"| {label} | not measured: {figures['skipped']} | |")
            continue

        def shown(f):
            return (
                f"{f['perplexity']:.2f} ± {f['perplexity_error']:.2f} "
                f"({f['nll']:.3f} nats)"
            )

        lines.append(
            f"| {label} | {shown(figures['teacher'])} | {shown(figures['student'])} |"
        )
        kl = kl or (context, figures)
    if kl:
        context, figures = kl
        for name, f in figures.items():
            if name == "teacher":
                continue
            k, what = f["vs_base"], name.replace("student", "the student", 1)
            size = "" if name == "student" else f"; PPL {f['perplexity']:.2f}"
            lines.append(
                f"| {where} KL of {what} from the teacher, same top p "
                f"({int(context):,}-token chunks) | | {k['kl']:.3f} ± "
                f"{k['kl_error']:.3f}, {k['same_top']:.1%}{size} |"
            )
    return lines


def _llama_perplexity(teacher, student, teacher_path, written, text_, out_dir, verbose):
    """The report's `llama-perplexity` figures on the held-out text, written
    to `out_dir` as one file: in llama.cpp on the written files where the
    student was written as GGUF, else in Keras."""
    from keras_guide.gguf import runtime
    from keras_guide.workflows import evaluate

    path = os.path.join(out_dir, HELD_OUT_TEXT)
    _files.write_text(path, text_)
    on_files = "gguf" in written and runtime.available()
    if on_files:
        first, students = (
            teacher_path,
            {
                "student" + kind[len("gguf") :]: path
                for kind, path in written.items()
                if kind.startswith("gguf")
            },
        )
    else:
        first, students = teacher, {"student": student}
    try:
        contexts = evaluate.teacher_and_students(
            first,
            students,
            text_,
            PERPLEXITY_CONTEXTS,
            PERPLEXITY_TOKENS,
            verbose=verbose,
        )
    except (RuntimeError, ValueError) as error:
        return {"error": f"{type(error).__name__}: {error}"}
    return {
        "runtime": "llama.cpp" if on_files else "Keras",
        "text": path,
        "protocol": "llama-perplexity: chunks of the context, the second half "
        "of each scored, the start token first where the "
        "vocabulary adds one",
        "contexts": contexts,
    }


@inputs.owns_run_folder("out_dir")
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

    Returns:
        The report (a dict, also written to `out_dir/report.json`).
    """
    seconds = {"import": float(import_seconds)}
    train, held = windows
    os.makedirs(out_dir, exist_ok=True)
    inputs.check_held_out(held)
    checkpoint.same_run(
        out_dir,
        resume,
        checkpoint.compress_settings(
            teacher,
            windows,
            target,
            shape,
            budget,
            calibration_tokens,
            max_candidates,
            guide_options,
            eval_windows,
        ),
    )
    search_path = os.path.join(out_dir, SEARCH_FILE)
    initial_path = os.path.join(out_dir, INITIAL_FILE)
    training = dict(
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
            train,
            target,
            shape,
            calibration_tokens,
            max_candidates=max_candidates,
            guide_options=guide_options,
            verbose=verbose,
            **_first_steps(teacher, windows, out_dir, budget, training),
        )
        record["search_steps"] = budget.search_steps
        if budget.search_steps:
            student = _continue_from_search(out_dir, record)
        checkpoint.write_atomic(initial_path, student.save)
        checkpoint.write_json(search_path, record)
    seconds["calibration"] = record["calibration"]["seconds"]
    seconds["candidate search"] = (
        time.perf_counter() - started - record["calibration"]["seconds"]
    )
    started = time.perf_counter()
    finished = _finished_training(out_dir, verbose) if resume else None
    # Stored teacher targets alone (a run stopped while storing them) resume
    # too: their windows are not scored again.
    resuming = (resume or budget.search_steps > 0) and (
        os.path.exists(checkpoint.checkpoint_dir(out_dir))
        or os.path.exists(
            os.path.join(out_dir, teacher_targets.FOLDER, teacher_targets.MANIFEST)
        )
    )
    result = (
        distill_lib.distill(
            teacher,
            student,
            windows,
            out_dir,
            resume=resuming,
            overwrite=not resuming,
            verbose=verbose,
            **training,
        )
        if not finished
        else finished
    )
    if finished:
        student = keras.saving.load_model(
            os.path.join(out_dir, distill_lib.STUDENT_FILE)
        )
    seconds["training"] = time.perf_counter() - started
    started = time.perf_counter()
    batches = text.eval_batches(*held, batch_size=8, max_windows=eval_windows)
    scores = evaluation.compare(teacher, student, batches)
    seconds["evaluation"] = time.perf_counter() - started
    started = time.perf_counter()
    is_gguf = str(teacher_path).endswith(".gguf")
    formats = (
        ["gguf"]
        if is_gguf
        else (["preset"] if hasattr(student, "save_to_preset") else [])
    )
    formats = list(dict.fromkeys(formats + list(exports)))
    written = export_lib.export(
        student,
        os.path.join(out_dir, "student"),
        formats,
        gguf_dtype=gguf_dtype,
        metadata_from=teacher_path if is_gguf else None,
        overwrite=True,
        description=_description(teacher_name or teacher_path, train),
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
        "search": record,
        "recipe": {
            **record["recipe"],
            "kd": budget.kd,
            "steps": budget.steps,
            "batch_size": budget.batch_size,
            "sequence_length": int(train[0].shape[1] - 1),
            "tokens": result["tokens"],
            "learning_rate": budget.learning_rate,
            "schedule": "linear warm-up, cosine to a tenth",
            "seed": budget.seed,
        },
        "training": result,
        "seconds": seconds,
        "outputs": [
            os.path.join(out_dir, distill_lib.STUDENT_FILE),
            *written.values(),
            os.path.join(out_dir, REPORT_TEXT),
            os.path.join(out_dir, CURVE_FILE),
        ],
    }
    if "gguf" in written:
        started = time.perf_counter()
        report["llama_cpp"] = _llama_cpp_speeds(
            teacher_path,
            {
                "student" + kind[len("gguf") :]: path
                for kind, path in written.items()
                if kind.startswith("gguf")
            },
        )
        if report["llama_cpp"] is not None:
            report["llama_cpp"]["parity"] = _llama_cpp_parity(
                student, written["gguf"], held
            )
        seconds["llama.cpp checks"] = time.perf_counter() - started
    if held_out_text:
        started = time.perf_counter()
        report["llama_perplexity"] = _llama_perplexity(
            teacher, student, teacher_path, written, held_out_text, out_dir, verbose
        )
        report["outputs"].append(os.path.join(out_dir, HELD_OUT_TEXT))
        seconds["perplexity protocol"] = time.perf_counter() - started
    with open(os.path.join(out_dir, distill_lib.RESULT_FILE)) as f:
        history = json.load(f)["history"]
    _plot(history, scores["teacher_loss"], os.path.join(out_dir, CURVE_FILE))
    _write_report(out_dir, report)
    return report


def _description(teacher, train):
    """What the student's files say of it: the context it was trained at and
    where its measurements are."""
    length = int(train[0].shape[1] - 1)
    return (
        f"A student of {os.path.basename(str(teacher))} made by keras-guide "
        f"compress (GUIDE + distillation), trained on {length}-token windows; "
        "measured with llama-perplexity's protocol at "
        f"{' and '.join(str(c) for c in PERPLEXITY_CONTEXTS)} tokens of "
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


def _llama_cpp_parity(student, path, held, windows=4):
    """The Keras student against its own GGUF file run by llama.cpp, on the
    first held-out windows: mean KL(Keras ‖ llama.cpp) and top-1 agreement."""
    from keras_guide.gguf import runtime

    tokens, mask = held
    sequences = [
        row[keep.astype(bool)] for row, keep in zip(tokens[:windows], mask[:windows])
    ]
    try:
        theirs = runtime.logits(path, sequences)
    except Exception as error:  # noqa: BLE001 (reported, not fatal)
        return {"error": f"{type(error).__name__}: {error}"}
    kls, agree, count = 0.0, 0.0, 0
    for sequence, z_cpp in zip(sequences, theirs):
        z = evaluation.logits(student, sequence)
        log_p = evaluation.log_softmax(z)
        log_q = evaluation.log_softmax(z_cpp.astype(np.float64))
        kls += float((np.exp(log_p) * (log_p - log_q)).sum())
        agree += float((z.argmax(-1) == z_cpp.argmax(-1)).sum())
        count += len(sequence)
    return {"kl": kls / count, "top1_agreement": agree / count, "tokens": count}


def _llama_cpp_speeds(teacher_path, students):
    """The teacher's and each student file's llama.cpp speed
    (`{"teacher": ..., "student": ..., "student.q4_k_m": ...}`); `None`
    without llama.cpp, and the reason where llama.cpp cannot run one of them
    (the run's results stand)."""
    from keras_guide.gguf import runtime

    if not runtime.available():
        return None
    try:
        return {
            "teacher": runtime.speed(teacher_path),
            **{name: runtime.speed(path) for name, path in students.items()},
        }
    except RuntimeError as error:
        return {"error": str(error)}
