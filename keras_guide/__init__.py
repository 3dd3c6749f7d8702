"""keras_guide: GUIDE (Guided Initialization and Distillation of Embeddings) for Keras 3.

A student model is made to match a larger teacher in parameter space: its
embeddings are the teacher's, compressed by PCA; the projection is folded into
the blocks it reads and writes; heads and neurons are uniformly selected.

Reference: Trinh, Menghani, Vee, arXiv 2510.06502.
"""

from keras_guide import callbacks
from keras_guide import distribution
from keras_guide.distillation import Distiller
from keras_guide.distillation import FeatureDistillation
from keras_guide.distillation import KDLoss
from keras_guide.distillation import LogitsDistillation
from keras_guide.distillation import kd_loss
from keras_guide.distillation import offline_teacher_dataset
from keras_guide.distillation import teacher_top_k
from keras_guide.distillation import top_k_kd_loss
from keras_guide.guide import GuideReport
from keras_guide.guide import build_student
from keras_guide.guide import guide
from keras_guide.guide import guided_student
from keras_guide.guide import weight_selection
from keras_guide.initializers import GuidedInitializer
from keras_guide.initializers import Projection
from keras_guide.initializers import as_projection
from keras_guide.initializers import diagonal_gain
from keras_guide.initializers import fold_gain
from keras_guide.initializers import fold_shift
from keras_guide.initializers import gqa_head_indices
from keras_guide.initializers import guided_value
from keras_guide.initializers import norm_scale
from keras_guide.initializers import pca_projection
from keras_guide.initializers import project_axis
from keras_guide.initializers import select_axis
from keras_guide.initializers import selection_projection
from keras_guide.initializers import uniform_indices
from keras_guide.regularizers import GuideRegularizer
from keras_guide.regularizers import set_guide_strength
from keras_guide.regularizers import track_guide_state

__version__ = "0.1.0"


def __getattr__(name):
    # `load_gguf` and `save_gguf` need the optional `gguf` package
    # (`keras-guide[gguf]`): imported on first use, so `import keras_guide`
    # works without it.
    if name in ("load_gguf", "save_gguf"):
        from keras_guide import gguf

        return getattr(gguf, name)
    raise AttributeError(f"module 'keras_guide' has no attribute {name!r}")


__all__ = [
    "Distiller",
    "FeatureDistillation",
    "KDLoss",
    "LogitsDistillation",
    "callbacks",
    "distribution",
    "kd_loss",
    "offline_teacher_dataset",
    "teacher_top_k",
    "top_k_kd_loss",
    "GuideReport",
    "build_student",
    "guide",
    "guided_student",
    "load_gguf",
    "save_gguf",
    "GuideRegularizer",
    "GuidedInitializer",
    "Projection",
    "as_projection",
    "diagonal_gain",
    "fold_gain",
    "fold_shift",
    "gqa_head_indices",
    "guided_value",
    "norm_scale",
    "pca_projection",
    "project_axis",
    "select_axis",
    "selection_projection",
    "set_guide_strength",
    "track_guide_state",
    "uniform_indices",
    "weight_selection",
]
