"""The report's measurements of the written student where it runs: llama.cpp's
speed of the teacher's and the student's files, the student's file against
the Keras student, and both models on the held-out text with
`llama-perplexity`'s protocol."""

import os
import time

import numpy as np

from keras_guide import _files
from keras_guide import evaluation

# The held-out text as one file: what `llama-perplexity -f` reads to give the
# report's numbers again.
HELD_OUT_TEXT = "heldout.txt"
# The report's llama-perplexity contexts, and the tokens scored at each.
PERPLEXITY_CONTEXTS, PERPLEXITY_TOKENS = (512, 2048), 8192


def perplexity(teacher, student, teacher_path, written, text_, out_dir, verbose):
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
            _student_files(written),
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


def _student_files(written):
    """The student's `.gguf` files among `export.export`'s outputs, by the
    name the report gives them (`student`, `student.q4_k_m`, ...)."""
    return {
        "student" + kind[len("gguf") :]: path
        for kind, path in written.items()
        if kind.startswith("gguf")
    }


def add_runtime_checks(report, student, teacher_path, written, held):
    """Adds llama.cpp's speed of the teacher and of each student file, and the
    student's file against the Keras student, to `report` (where the
    student was written as GGUF)."""
    if "gguf" not in written:
        return
    started = time.perf_counter()
    report["llama_cpp"] = _speeds(teacher_path, _student_files(written))
    if report["llama_cpp"] is not None:
        report["llama_cpp"]["parity"] = _parity(student, written["gguf"], held)
    report["seconds"]["llama.cpp checks"] = time.perf_counter() - started


def _parity(student, path, held, windows=4):
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


def _speeds(teacher_path, students):
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


def add_perplexity(
    report, teacher, student, teacher_path, written, text_, out_dir, verbose
):
    """Adds `perplexity`'s figures on the held-out text `text_` to `report`,
    with their seconds and the text's file in `out_dir`."""
    started = time.perf_counter()
    report["llama_perplexity"] = perplexity(
        teacher, student, teacher_path, written, text_, out_dir, verbose
    )
    report["outputs"].append(os.path.join(out_dir, HELD_OUT_TEXT))
    report["seconds"]["perplexity protocol"] = time.perf_counter() - started


def add_measurements(
    report, teacher, student, written, held, held_out_text, out_dir, verbose
):
    """Adds to `report` what the student does where it runs: llama.cpp's
    checks of its `.gguf` files (`add_runtime_checks`) and, given the
    held-out text as one string, `llama-perplexity`'s protocol on it
    (`add_perplexity`; `None` skips it)."""
    teacher_path = report["teacher"]["path"]
    add_runtime_checks(report, student, teacher_path, written, held)
    if held_out_text:
        add_perplexity(
            report,
            teacher,
            student,
            teacher_path,
            written,
            held_out_text,
            out_dir,
            verbose,
        )
