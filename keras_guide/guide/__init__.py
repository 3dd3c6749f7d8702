"""`guide(teacher, student)`: GUIDE-initialize a KerasHub student from its teacher.

- `options.py`: `GuideOptions`, every option checked when made, and the
  vocabulary of choices (`BLOCKS`, `PROJECTIONS`, ..., the data-aware recipe).
- `core.py`: `guide()` and `weight_selection()`: validate, calibrate, plan,
  apply, report.
- `plan.py`: each student weight's guided value, on the host.
- `report.py`: `GuideReport`, how every weight was set.
- `build.py`: `build_student`, a student of the teacher's family.
"""

from keras_guide.guide.build import build_student
from keras_guide.guide.core import guide
from keras_guide.guide.core import weight_selection
from keras_guide.guide.options import DATA_AWARE
from keras_guide.guide.options import DATA_FREE
from keras_guide.guide.options import GuideOptions
from keras_guide.guide.report import GuideReport
from keras_guide.guide.report import ReportRow

__all__ = [
    "DATA_AWARE",
    "DATA_FREE",
    "GuideOptions",
    "GuideReport",
    "ReportRow",
    "build_student",
    "guide",
    "weight_selection",
]
