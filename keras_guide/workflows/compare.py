"""`keras-guide compare`: the ablation on the user's teacher, student shape and text."""

import dataclasses
import time

import keras

from keras_guide.guide import build_student
from keras_guide.workflows import ablation
from keras_guide.workflows import text


def compare(
    teacher,
    sizes,
    windows,
    settings,
    out_dir,
    variants=ablation.DEFAULT_VARIANTS,
    meta=None,
    started=None,
    verbose=True,
):
    """Runs the ablation's variants on students of `sizes` built from `teacher`.

    Args:
        teacher: a KerasHub causal LM.
        sizes: the students' sizes (`build_student`'s generic names).
        windows: `(train, held_out)` windows from `text.text_windows`.
        settings: an `ablation.Settings`.
        out_dir: where the demo's files are written (`ablation.write_outputs`).
        variants: the rows.
        meta: extra entries for `results.json` (e.g. where the teacher came
            from).
        started: `time.perf_counter()` when the command started (default:
            now), for the recorded wall time.
        verbose: progress bars and the table.

    Returns:
        `(results, teacher_loss)`.
    """
    started = time.perf_counter() if started is None else started
    train = text.Batches(
        *windows[0], batch_size=settings.batch_size, seed=settings.data_seed
    )
    held = text.eval_batches(
        *windows[1], batch_size=16, max_windows=settings.eval_windows
    )
    curve = text.eval_batches(
        *windows[1], batch_size=16, max_windows=settings.curve_windows
    )

    def make_student(seed):
        keras.utils.set_random_seed(int(seed))
        return build_student(teacher, **sizes)

    results, best, teacher_loss = ablation.run_ablation(
        teacher,
        make_student,
        train,
        held,
        settings,
        variants=variants,
        curve_batches=curve,
        verbose=verbose,
    )
    meta = {
        "backend": keras.backend.backend(),
        "settings": dataclasses.asdict(settings),
        "sizes": sizes,
        **(meta or {}),
        "wall_seconds": time.perf_counter() - started,
    }
    # The table first: what the run computed is on screen even if a file
    # cannot be written.
    if verbose:
        print()
        print(ablation.format_table(results, teacher_loss))
    ablation.write_outputs(results, best, teacher_loss, out_dir, meta)
    return results, teacher_loss
