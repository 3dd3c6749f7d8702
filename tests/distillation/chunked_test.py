"""The Distiller's CE + KD from hidden states in chunks of tokens
(`logits_chunk_tokens`): the same loss and gradients as the whole batch's
logits, checked against a float64 NumPy forward and backward pass."""

import keras
import numpy as np
import pytest

from keras_guide.distillation import Distiller
from keras_guide.distillation import FeatureDistillation
from keras_guide.distillation import LogitsDistillation
from keras_guide.distillation import _chunked
from tests.harness import models as tiny

VOCAB, WIDTH, ROWS, SEQ = 23, 4, 6, 5


def _tied_lm(seed):
    """Tied embedding → tanh block → the embedding in reverse (a causal LM's
    head)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None,), dtype="int32")
    embedding = keras.layers.ReversibleEmbedding(
        VOCAB,
        WIDTH,
        embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
        name="embed",
    )
    hidden = keras.layers.Dense(WIDTH, activation="tanh", name="block")(
        embedding(inputs)
    )
    return keras.Model(inputs, embedding(hidden, reverse=True))


def _reference(teacher, student, x, y, w, tau, alpha):
    """Float64 loss terms and the student's gradients, by hand."""

    def weights(model):
        return {
            v.path.split("/")[0] + "/" + v.name: tiny.numpy(v).astype(np.float64)
            for v in model.weights
        }

    t, s = weights(teacher), weights(student)
    h_t = np.tanh(t["embed/embeddings"][x] @ t["block/kernel"] + t["block/bias"])
    z_t = h_t @ t["head/kernel"] + t["head/bias"]
    e, k, b = s["embed/embeddings"], s["block/kernel"], s["block/bias"]
    h1 = e[x]
    h2 = np.tanh(h1 @ k + b)
    z = h2 @ e.T
    log_q1 = tiny.log_softmax64(z)
    log_p, log_q = tiny.log_softmax64(z_t / tau), tiny.log_softmax64(z / tau)
    ce = -np.take_along_axis(log_q1, y[..., None], -1)[..., 0]
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    total = w.sum()
    ce_mean, kd = (ce * w).sum() / total, tau**2 * (kl * w).sum() / total
    onehot = np.eye(VOCAB)[y]
    dz = (
        (
            alpha * (np.exp(log_q1) - onehot)
            + (1 - alpha) * tau * (np.exp(log_q) - np.exp(log_p))
        )
        * w[..., None]
        / total
    )
    da = (dz @ e) * (1 - h2**2)
    d_e = np.einsum("btv,btd->vd", dz, h2)
    np.add.at(d_e, x, da @ k.T)
    grads = {
        "embed/embeddings": d_e,
        "block/kernel": np.einsum("btd,bte->de", h1, da),
        "block/bias": da.sum((0, 1)),
    }
    return ce_mean, kd, alpha * ce_mean + (1 - alpha) * kd, grads


@pytest.mark.parametrize("chunk", [0, 7])
def test_loss_and_gradients_match_float64_reference(chunk):
    teacher = tiny.dense_lm(VOCAB, WIDTH, seed=1, scale=10.0)  # a Dense head
    student = _tied_lm(2)
    x, y, w = tiny.token_batch(ROWS, SEQ, VOCAB, seed=3)
    tau, alpha = 2.0, 0.3
    distiller = Distiller(
        teacher,
        student,
        LogitsDistillation(tau),
        student_loss_weight=alpha,
        logits_chunk_tokens=chunk,
    )
    # Chunk 7 of 30 tokens: five chunks, the last one padded.
    assert (distiller._heads is not None) == (chunk > 0)
    distiller.compile(optimizer=keras.optimizers.SGD(1.0))
    ce, kd, loss, grads = _reference(teacher, student, x, y, w, tau, alpha)
    before = {
        v.path: tiny.numpy(v).astype(np.float64) for v in student.trainable_weights
    }
    logs = distiller.train_on_batch(x, y, sample_weight=w, return_dict=True)
    np.testing.assert_allclose(
        [logs["student_loss"], logs["kd_loss"], logs["loss"]], [ce, kd, loss], rtol=2e-5
    )
    for v in student.trainable_weights:
        want = grads[v.path.split("/")[0] + "/" + v.name]
        got = before[v.path] - tiny.numpy(v)  # SGD at rate 1: w − g
        np.testing.assert_allclose(
            got, want, atol=2e-6 * np.abs(want).max(), err_msg=v.path
        )


def test_chunked_gpt2_step_equals_whole_logits_step_with_feature_term():
    x, y, w = tiny.lm_batch(rows=4)
    steps = {}
    for chunk in (0, 5, None):
        teacher = tiny.gpt2(hidden=16, layers=2, seed=1)
        student = tiny.gpt2(hidden=8, layers=1, seed=2)
        distiller = Distiller(
            teacher,
            student,
            [
                LogitsDistillation(2.0),
                FeatureDistillation(
                    teacher_layer_name="transformer_layer_1",
                    student_layer_name="transformer_layer_0",
                ),
            ],
            student_loss_weight=0.3,
            logits_chunk_tokens=chunk,
        )
        assert (distiller._heads is not None) == (chunk != 0)
        distiller.compile(optimizer=keras.optimizers.SGD(1.0))
        before = [tiny.numpy(v) for v in student.trainable_weights]
        logs = distiller.train_on_batch(x, y, sample_weight=w, return_dict=True)
        steps[chunk] = (
            logs,
            [b - tiny.numpy(v) for b, v in zip(before, student.trainable_weights)],
        )
    whole_logs, whole = steps.pop(0)
    for logs, grads in steps.values():
        for name in ("loss", "student_loss", "kd_loss", "hidden_loss"):
            np.testing.assert_allclose(logs[name], whole_logs[name], rtol=1e-5)
        scale = max(np.abs(g).max() for g in whole)
        for got, want in zip(grads, whole):
            np.testing.assert_allclose(got, want, atol=1e-6 * scale)


def test_metrics_and_custom_student_loss_take_the_whole_logits():
    x, y, w = tiny.lm_batch(rows=4)
    teacher, student = tiny.gpt2(hidden=16, seed=1), tiny.gpt2(hidden=8, seed=2)
    distiller = Distiller(teacher, student, logits_chunk_tokens=5)
    distiller.compile(optimizer="sgd", metrics=["sparse_categorical_accuracy"])
    logs = distiller.train_on_batch(x, y, sample_weight=w, return_dict=True)
    assert 0.0 <= logs["sparse_categorical_accuracy"] <= 1.0
    distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    logs = distiller.train_on_batch(x, y, sample_weight=w, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["kd_loss"] > 0


def test_output_head_finds_a_causal_lm_head_and_refuses_other_forms():
    model = tiny.gpt2()
    trunk, head = _chunked.output_head(model)
    assert head is model.backbone.token_embedding and trunk is model.backbone
    inputs = keras.Input((3,))
    other = keras.Model(inputs, keras.layers.Activation("softmax")(inputs))
    assert _chunked.output_head(other) is None


@pytest.mark.parametrize("value", [-1, 2.5, True, "auto"])
def test_logits_chunk_tokens_refuses_other_values(value):
    with pytest.raises(ValueError, match="logits_chunk_tokens"):
        Distiller(tiny.gpt2(seed=1), tiny.gpt2(seed=2), logits_chunk_tokens=value)
