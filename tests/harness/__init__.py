"""The tests' one harness: tiny models and data, tiny GGUF files, the KerasHub
families every adapter test runs, CLI workspaces, the real checkpoints, and
float64 NumPy references. Test modules import from here, never from each
other or from `benchmarks/`.

- `models`: tiny KerasHub and dense language models, batches, and NumPy
  references for losses and gradients.
- `gguf_files`: tiny Llama and Gemma 3 GGUF files written from scratch.
- `gguf_reference`: a float64 NumPy forward pass in llama.cpp's layout.
- `families`: one tiny teacher/student configuration per supported family.
- `workspace`: a teacher, a student and texts on disk for the CLI tests.
- `checkpoints`: the real pretrained checkpoints (skipped where not
  installed, required in CI).
"""
