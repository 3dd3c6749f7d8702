"""The `distill` workflow's offline teacher: stored top-k logits in place of
the live teacher."""

import json

import keras
import numpy as np
import pytest

from keras_guide.distillation import teacher_top_k
from keras_guide.workflows import distill
from keras_guide.workflows import run
from keras_guide.workflows import text
from tests.harness import models


def _windows(rows=12, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, models.VOCAB, (rows, models.SEQ + 1)).astype("int32")
    mask = np.ones_like(tokens)
    mask[::3, -3:] = 0  # some padded windows
    return tokens * mask, mask


class _Counting(keras.Model):
    """Wraps a causal LM and counts the windows it is run on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, 0

    def predict_on_batch(self, x):
        self.rows += int(np.shape(x["token_ids"])[0])
        return self.model.predict_on_batch(x)


def test_the_teacher_runs_once_per_window_and_its_targets_are_top_k():
    teacher = models.gpt2(seed=1)
    counting = _Counting(teacher)
    tokens, mask = _windows()
    batches = text.Batches(tokens, mask, batch_size=4, seed=0)
    stored = distill.StoredTeacherBatches(
        batches, counting, top_k=5, temperature=2.0, num_steps=100
    )
    epochs = 3
    for step in range(epochs * batches.batches_per_epoch):
        x, y, weight = stored.batch(step)
        want_x, want_y, want_weight = batches.batch(step)
        np.testing.assert_array_equal(y["labels"], want_y)
        np.testing.assert_array_equal(weight, want_weight)
        want = teacher_top_k(teacher, want_x, 5, temperature=2.0)
        for key, value in want.items():
            np.testing.assert_allclose(y[key], value, rtol=1e-5, atol=1e-5)
    # Every window was used, each run through the teacher once.
    assert counting.rows == len(tokens)


def _distilled(tmp_path, name, kd_options):
    teacher = models.gpt2(seed=1)
    student = models.gpt2(seed=2)
    windows = (_windows(), _windows(6, seed=1))
    result = distill.distill(
        teacher,
        student,
        windows,
        str(tmp_path / name),
        num_steps=4,
        batch_size=4,
        learning_rate=1e-2,
        kd_options=kd_options,
        checkpoint_every=2,
        verbose=False,
    )
    return student, result


def test_stored_top_k_over_the_whole_vocabulary_trains_as_the_live_teacher(tmp_path):
    kd = {"temperature": 2.0, "student_loss_weight": 0.5}
    live, live_result = _distilled(tmp_path, "live", kd)
    stored, stored_result = _distilled(
        tmp_path, "stored", {**kd, "top_k": models.VOCAB}
    )
    for a, b in zip(live.weights, stored.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=2e-5
        )
    np.testing.assert_allclose(
        stored_result["held_out_loss"], live_result["held_out_loss"], rtol=1e-5
    )
    assert stored_result["teacher_top_k_seconds"] > 0
    settings = json.loads((tmp_path / "stored" / distill.RESULT_FILE).read_text())[
        "settings"
    ]
    assert settings["top_k"] == models.VOCAB
    # A few logits only: another (truncated) teacher, so another student.
    few, _ = _distilled(tmp_path, "few", {**kd, "top_k": 2})
    assert not np.allclose(
        keras.ops.convert_to_numpy(few.weights[0]),
        keras.ops.convert_to_numpy(live.weights[0]),
    )


@pytest.mark.parametrize("top_k", [0, -3, True, 2.5, "8"])
def test_a_bad_top_k_is_refused(top_k):
    with pytest.raises(ValueError, match="must be a positive integer"):
        run.distiller_arguments({"top_k": top_k})


def test_a_top_k_beyond_the_vocabulary_or_the_memory_is_refused_up_front(
    tmp_path, monkeypatch
):
    teacher = models.gpt2(seed=1)
    batches = text.Batches(*_windows(), batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"more than the teacher's vocabulary \(64\)"):
        distill.StoredTeacherBatches(batches, teacher, models.VOCAB + 1, 1.0, 10)
    # 12 windows x 8 tokens x (8 x 64 + 4) bytes against a machine of 64 KiB.
    monkeypatch.setattr(
        distill.os,
        "sysconf",
        lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 16}[name],
    )
    with pytest.raises(ValueError, match="12 windows this run uses"):
        distill.StoredTeacherBatches(batches, teacher, 64, 1.0, 10)
    # A previous run's outputs are still there after the refusal.
    out = tmp_path / "run"
    out.mkdir()
    (out / distill.STUDENT_FILE).write_text("previous")
    with pytest.raises(ValueError, match="windows this run uses"):
        distill.distill(
            teacher,
            models.gpt2(seed=2),
            (_windows(), _windows(6, 1)),
            str(out),
            num_steps=4,
            batch_size=4,
            kd_options={"top_k": 64},
            overwrite=True,
            verbose=False,
        )
    assert (out / distill.STUDENT_FILE).read_text() == "previous"
