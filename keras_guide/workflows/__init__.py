"""The user's workflows: what the `keras-guide` commands run.

They take models already loaded and text already tokenized (the command line
does the loading) and are built on the library core, which never imports
them:

- `text`: text files → cleaned documents → fixed-length windows →
  fixed-order training batches and held-out batches.
- `training`: the optimizer, the learning-rate schedule and the one training
  loop every run uses.
- `checkpoint`: every file a run writes to resume or to ship weights: the
  distillation checkpoint and the one `.npz` format for variables.
- `ablation`: the variants, the runner, the table, the plot.
- `initialize`, `distill`, `compare`, `compress`, `export`: the commands
  (`keras-guide init` runs `initialize`); `shapes` sizes a student for
  `compress`; `inputs` loads models, tokenizers and calibration text.

Nothing here is imported by `import keras_guide`.
"""
