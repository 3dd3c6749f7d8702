"""`keras-guide init`: a GUIDE-initialized student of the teacher's family."""

import os

import keras

from keras_guide.guide import build_student
from keras_guide.guide import guide
from keras_guide.workflows import checkpoint


def init_student(teacher, out_path, sizes, guide_options=None, seed=0):
    """Builds a student of `teacher`'s family, GUIDE-initializes it, saves it.

    Args:
        teacher: a KerasHub backbone or task model.
        out_path: the student's `.keras` file (written atomically: a
            crash leaves the previous file or none, never a torn one).
        sizes: the student's sizes (`build_student`'s generic names).
        guide_options: keyword arguments of `keras_guide.guide`.
        seed: seeds the weights GUIDE leaves random.

    Returns:
        `(report, student)`: the `GuideReport` and the student written.
    """
    keras.utils.set_random_seed(int(seed))
    student = build_student(teacher, **sizes)
    report = guide(teacher, student, **(guide_options or {}))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    checkpoint.write_atomic(out_path, student.save)
    return report, student
