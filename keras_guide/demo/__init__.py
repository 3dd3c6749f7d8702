"""The embedded demo: GUIDE's ablation on Shakespeare's plays, on a CPU.

- `data`: the plays and their fixed split (whole plays held out).
- `tokenizer`: a byte-level BPE (2048 tokens) trained on the training plays,
  shipped in `assets/`, readable by `keras_hub.models.GPT2Tokenizer`.
- `models`: the teacher (GPT-2 4×256, shipped in `assets/`) and student configs.
- `teacher`: the recipe that trained the shipped teacher.
- `run`: `keras-guide demo`, the ablation (`keras_guide.workflows.ablation`)
  on the plays.

Importing it registers its names with the resolver
(`keras_guide.workflows.inputs`): the model and the tokenizer `"demo"` (the
shipped teacher, its BPE, also what `"auto"` gives a teacher without a
tokenizer) and the texts `shakespeare:train`, `:validation` and `:test`.
Nothing here is imported by `import keras_guide`.
"""

import functools

from keras_guide.workflows import inputs


def _teacher():
    from keras_guide.demo import models

    return models.load_teacher()


def _encoder():
    from keras_guide.demo import tokenizer

    return tokenizer.load_encoder()


def _plays(split):
    from keras_guide.demo import data

    return data.split_paths(split)


inputs.register_model("demo", _teacher)
inputs.register_encoder("demo", _encoder, auto=True)
for _split in ("train", "validation", "test"):
    inputs.register_text(f"shakespeare:{_split}", functools.partial(_plays, _split))
