"""Shared set-up of the CLI tests: a tiny saved teacher with play text, and a
way to stop a training loop with Ctrl-C at a chosen step."""

import contextlib

from keras_guide import cli
from keras_guide.demo import data
from keras_guide.demo import models
from keras_guide.workflows import text

STUDENT = ["--hidden-dim", "8", "--num-heads", "1", "--intermediate-dim", "16"]


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
        assert cli.main(["init", str(root / "teacher.keras"), "--out",
                         str(root / "student.keras"), *STUDENT]) == 0
    return root


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
