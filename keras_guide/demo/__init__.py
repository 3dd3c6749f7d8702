"""The embedded demo: GUIDE's ablation on Shakespeare's plays, on a CPU.

- `data`: the plays and their fixed split (whole plays held out).
- `tokenizer`: a byte-level BPE (2048 tokens) trained on the training plays,
  shipped in `assets/`, readable by `keras_hub.models.GPT2Tokenizer`.
- `models`: the teacher (GPT-2 4×256, shipped in `assets/`) and student configs.
- `teacher`: the recipe that trained the shipped teacher.
- `run`: `keras-guide demo`, the ablation (`keras_guide.workflows.ablation`)
  on the plays.

Nothing here is imported by `import keras_guide`.
"""
