"""The embedded demo: GUIDE's ablation on Shakespeare's plays, on a CPU, in minutes.

- `data`: the plays (whole plays held out), windows, fixed-order batches and
  the held-out evaluation.
- `tokenizer`: a byte-level BPE (2048 tokens) trained on the training plays,
  shipped in `assets/`, readable by `keras_hub.models.GPT2Tokenizer`.
- `models`: the teacher (GPT-2 4×256, shipped in `assets/`) and student configs.
- `teacher`: the recipe that trained the shipped teacher.
- `training`: the one training loop every run uses.
- `ablation`: the variants, the table, the plot.
- `demo`: `keras-guide demo`; `workflows`: `init`, `distill`, `compare`.

Nothing here is imported by `import keras_guide`.
"""
