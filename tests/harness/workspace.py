"""Shared set-up of the CLI tests: a tiny saved teacher with play text (or a
tiny GGUF teacher with random words), the hashes of a run folder's files, and
a way to stop a training loop with Ctrl-C at a chosen step."""

import contextlib
import hashlib
import os

import numpy as np

from keras_guide import cli
from keras_guide.demo import data
from keras_guide.demo import models
from keras_guide.workflows import text

STUDENT = ["--hidden-dim", "8", "--num-heads", "1", "--intermediate-dim", "16"]
# The words of `make_gguf_workspace`'s texts.
WORDS = "the in a on er there then he she at an".split()


def make_workspace(root, config, plays=("tempest",), characters=3000, student=True):
    """Writes `teacher.keras` (a GPT-2 of `config`), `texts/<play>.txt` (the
    first `characters` of each play) and, with `student`, `student.keras`
    from `keras-guide init` with the `STUDENT` sizes. Returns `root`."""
    models.build_causal_lm(config, seed=1).save(root / "teacher.keras")
    (root / "texts").mkdir()
    for name in plays:
        (root / "texts" / f"{name}.txt").write_text(
            data.load_texts([name])[0][:characters]
        )
    if student:
        assert (
            cli.main(
                [
                    "init",
                    str(root / "teacher.keras"),
                    "--out",
                    str(root / "student.keras"),
                    *STUDENT,
                ]
            )
            == 0
        )
    return root


def make_gguf_workspace(root):
    """Writes `teacher.gguf` (a tiny 4-block Llama of context 64, byte-level
    BPE), `train/train{0,1,2}.txt` and `eval/eval0.txt` (3,000 random
    `WORDS` each, seed 0): a `keras-guide compress` run's inputs. Returns
    `root`."""
    from tests.harness import gguf_files

    gguf_files.write_llama(
        root / "teacher.gguf", layers=4, metadata={"llama.context_length": 64}
    )
    rng = np.random.default_rng(0)
    for folder, count in (("train", 3), ("eval", 1)):
        (root / folder).mkdir()
        for i in range(count):
            (root / folder / f"{folder}{i}.txt").write_text(
                " ".join(rng.choice(WORDS, 3000))
            )
    return root


def file_hashes(folder):
    """Every file under `folder` with its hash: what a refused command must
    keep."""
    files = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).digest()
    return files


@contextlib.contextmanager
def ctrl_c_at(step):
    """Training raises KeyboardInterrupt when it asks for batch `step`."""
    batch = text.Batches.batch

    def interrupted(self, k):
        if k == step:
            raise KeyboardInterrupt
        return batch(self, k)

    text.Batches.batch = interrupted
    try:
        yield
    finally:
        text.Batches.batch = batch
