"""Activation statistics against a float64 NumPy forward pass of the same checkpoint."""

import tracemalloc

import keras
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the reference model is a GGUF file")

from keras_guide import guide  # noqa: E402
from keras_guide.calibration import calibration_batches  # noqa: E402
from keras_guide.calibration import collect_statistics  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402
from tests.harness import gguf_reference as reference  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tiny.write_llama(
        tmp_path_factory.mktemp("llama") / "llama.gguf", quant=tiny.Q.F32
    )
    lm = load_gguf(path)
    return str(path), lm


def _calibration(vocabulary, rows=3, length=tiny.SEQ, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(3, vocabulary, (rows, length)).astype("int32")


def _reference_statistics(path, rows, file):
    """The statistics `collect_statistics` documents, from the NumPy forward pass."""
    d = file.meta("llama.embedding_length")
    n_blocks = file.meta("llama.block_count")
    gram = np.zeros((d, d))
    heads, neurons, change = None, None, np.zeros(n_blocks)
    tokens = 0
    for ids in rows:
        trace = {}
        reference.llama_logits(path, ids, trace)
        tokens += len(ids)
        boundaries = [trace["block_input"][i] for i in range(n_blocks)] + [
            trace["final_input"]
        ]
        for x in boundaries:
            v = x / np.linalg.norm(x, axis=1, keepdims=True)
            gram += v.T @ v
        if heads is None:
            heads = np.zeros((n_blocks, trace["heads"][0].shape[1]))
            neurons = np.zeros((n_blocks, trace["neurons"][0].shape[1]))
        for i in range(n_blocks):
            b = f"blk.{i}."
            wo = file(b + "attn_output.weight").T  # (h·ℓ, d)
            per_head = trace["heads"][i]
            h, dh = per_head.shape[1:]
            for head in range(h):
                written = per_head[:, head] @ wo[head * dh : (head + 1) * dh]
                heads[i, head] += np.sum(written**2)
            down = file(b + "ffn_down.weight").T  # (f, d)
            neurons[i] += np.sum(trace["neurons"][i] ** 2, axis=0) * np.sum(
                down**2, axis=1
            )
            a, o = trace["block_input"][i], trace["block_output"][i]
            cosine = np.sum(a * o, 1) / (
                np.linalg.norm(a, axis=1) * np.linalg.norm(o, axis=1)
            )
            change[i] += np.sum(1 - cosine)
    return gram, heads, neurons, change / tokens


def test_statistics_equal_the_numpy_reference(model):
    path, lm = model
    rows = _calibration(lm.backbone.vocabulary_size)
    batches = calibration_batches(
        rows, ["token_ids", "padding_mask"], lm.backbone.vocabulary_size, batch_size=2
    )
    stats = collect_statistics(lm, batches)
    gram, heads, neurons, change = _reference_statistics(
        path, rows, reference.File(path)
    )
    assert stats.tokens == rows.size
    np.testing.assert_allclose(stats.gram, gram, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.head_energy, heads, rtol=1e-4)
    np.testing.assert_allclose(stats.neuron_energy, neurons, rtol=1e-4)
    np.testing.assert_allclose(stats.block_change, change, rtol=1e-3, atol=1e-7)


def test_padding_is_left_out_of_every_statistic(model):
    _, lm = model
    rows = _calibration(lm.backbone.vocabulary_size, rows=2)
    mask = np.ones_like(rows)
    mask[1, 5:] = 0
    v = lm.backbone.vocabulary_size
    names = ["token_ids", "padding_mask"]
    padded = collect_statistics(
        lm, calibration_batches([{"token_ids": rows, "padding_mask": mask}], names, v)
    )
    # Causal attention: the first 5 tokens of row 1 do not see the padding.
    short = collect_statistics(
        lm, calibration_batches([rows[:1], rows[1:, :5]], names, v)
    )
    assert padded.tokens == short.tokens == 13
    np.testing.assert_allclose(padded.gram, short.gram, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(padded.neuron_energy, short.neuron_energy, rtol=1e-5)


def test_teacher_is_left_exactly_as_it_was(model):
    _, lm = model
    before = [keras.ops.convert_to_numpy(w).copy() for w in lm.weights]
    layers = lm.backbone._flatten_layers(include_self=False)
    v = lm.backbone.vocabulary_size
    batches = calibration_batches(_calibration(v), ["token_ids", "padding_mask"], v)
    collect_statistics(lm, batches)
    with pytest.raises(KeyError):  # A failure mid-pass restores the layers too.
        collect_statistics(lm, batches + [{"token_ids": np.zeros((1, 3), "int32")}])
    assert not any("call" in vars(layer) for layer in layers)
    for w, value in zip(lm.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), value)


def test_memory_holds_running_sums_not_activations(model):
    _, lm = model
    v = lm.backbone.vocabulary_size
    rows = _calibration(v, rows=48, length=64)
    batches = calibration_batches(rows, ["token_ids", "padding_mask"], v, batch_size=2)
    collect_statistics(lm, batches[:1])  # Warm up the backend's caches.
    tracemalloc.start()
    stats = collect_statistics(lm, batches)
    ours = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*keras_guide*")]
    )
    tracemalloc.stop()
    held = sum(stat.size for stat in ours.statistics("filename"))
    sums = sum(
        np.asarray(a).nbytes
        for a in (
            stats.gram,
            stats.head_energy,
            stats.neuron_energy,
            stats.block_change,
        )
    )
    one_batch = 2 * 64 * 8 * (3 * 32 + 4 * 8 + 64)  # float64 boundaries, heads, neurons
    assert held < sums + one_batch, (held, sums, one_batch)


def test_importance_choices_match_the_reference_statistics_on_every_backend(model):
    """The same calibration text gives the same student on every backend: its
    choices equal those made from the float64 NumPy statistics."""
    from keras_guide import build_student
    from keras_guide.initializers import importance

    path, lm = model
    rows = _calibration(lm.backbone.vocabulary_size, rows=6, seed=3)
    student = build_student(
        lm.backbone,
        hidden_dim=16,
        num_layers=1,
        num_heads=2,
        num_key_value_heads=1,
        intermediate_dim=32,
    )
    report = guide(
        lm,
        student,
        projection="activations",
        select="importance",
        layer_map="importance",
        norm="fold",
        calibration=rows,
    )
    gram, heads, neurons, change = _reference_statistics(
        path, rows, reference.File(path)
    )
    block = importance.important_blocks(change, 1)
    assert report.layer_map == block
    q, kv = importance.gqa_importance_indices(heads[block[0]], 2, 2, 1)
    assert report.selections[0]["heads"] == q.tolist()
    assert report.selections[0]["kv_heads"] == kv.tolist()
    assert (
        report.selections[0]["neurons"]
        == importance.top_indices(neurons[block[0]], 32).tolist()
    )
    _, vectors = np.linalg.eigh(gram)
    top = vectors[:, ::-1][:, :16]
    # The same subspace (signs and order are fixed by the projection itself).
    np.testing.assert_allclose(
        np.abs(report.projection.matrix.T @ top).max(axis=1), 1.0, atol=1e-4
    )
    assert report.calibration["tokens"] == rows.size
