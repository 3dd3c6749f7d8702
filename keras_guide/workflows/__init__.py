"""The user's workflows: what `keras-guide init`, `distill` and `compare` run.

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
- `init`, `distill`, `compare`: the three commands.

Nothing here is imported by `import keras_guide`.
"""
