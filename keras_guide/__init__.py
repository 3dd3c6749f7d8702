"""keras_guide: GUIDE (Guided Initialization and Distillation of Embeddings),
for Keras 3.

A student model is made to match a larger teacher in parameter space: its
embeddings are the teacher's, compressed into its width; the projection is
folded into the blocks it reads and writes; heads and neurons are selected.

The product, here: `guide` and `build_student` (initialize a student from a
teacher), `weight_selection` (the peer baseline), `Distiller` (train it,
with `LogitsDistillation` / `FeatureDistillation` terms), `GuidedInitializer`
and `GuideRegularizer` (GUIDE as Keras initializers and regularizers),
`load_gguf` / `save_gguf` (llama.cpp checkpoints in and out) and `save_hf`
(a Hugging Face folder `transformers` loads). The maths they are built from
lives in the submodules: `keras_guide.initializers` (projections, selection,
folding), `keras_guide.distillation` (losses, offline teachers),
`keras_guide.regularizers`, `keras_guide.calibration`, `keras_guide.callbacks`,
`keras_guide.distribution`, `keras_guide.evaluation`.

Reference: Trinh, Menghani, Vee, arXiv 2510.06502.
"""

from keras_guide import _saving
from keras_guide import callbacks
from keras_guide import distribution
from keras_guide.distillation import Distiller
from keras_guide.distillation import FeatureDistillation
from keras_guide.distillation import LogitsDistillation
from keras_guide.guide import GuideReport
from keras_guide.guide import build_student
from keras_guide.guide import guide
from keras_guide.guide import weight_selection
from keras_guide.initializers import GuidedInitializer
from keras_guide.regularizers import GuideRegularizer
from keras_guide.regularizers import set_guide_strength

__version__ = "0.1.0"

# Every class keras_guide's files name is found by Keras from here on; the
# GGUF tokenizers' module (KerasHub, TensorFlow) is imported when a file
# needs one.
_saving.register()


def __getattr__(name):
    # `load_gguf` and `save_gguf` need the optional `gguf` package
    # (`keras-guide[gguf]`): imported on first use, so `import keras_guide`
    # works without it.
    if name in ("load_gguf", "save_gguf"):
        from keras_guide import gguf

        return getattr(gguf, name)
    # `save_hf` (`keras-guide[hf]`) builds its tokenizer files from the GGUF
    # tokenizer classes, so it is imported on first use as well.
    if name == "save_hf":
        from keras_guide.hf import save_hf

        return save_hf
    raise AttributeError(f"module 'keras_guide' has no attribute {name!r}")


__all__ = [
    "Distiller",
    "FeatureDistillation",
    "GuideRegularizer",
    "GuideReport",
    "GuidedInitializer",
    "LogitsDistillation",
    "build_student",
    "callbacks",
    "distribution",
    "guide",
    "load_gguf",
    "save_gguf",
    "save_hf",
    "set_guide_strength",
    "weight_selection",
]
