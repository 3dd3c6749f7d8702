import keras
import numpy as np
import pytest

from keras_guide import gqa_head_indices
from keras_guide import uniform_indices
from keras_guide.guide import build_student
from keras_guide.guide import guide
from tests.adapters import harness

EXACT = ["gpt2", "llama", "gemma", "qwen", "qwen3"]


def _relative_error(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("name", EXACT)
def test_full_width_student_reproduces_teacher_logits(name):
    family = harness.FAMILIES[name]
    teacher = harness.make_teacher(family)
    before = harness.weights(teacher)
    student = build_student(teacher)
    report = guide(teacher, student, blocks="all", norm="fold")
    x = harness.inputs(family)
    assert _relative_error(harness.logits(student, x), harness.logits(teacher, x)) < 1e-5
    assert report.projection.kind == ("pca_mean_preserving" if name == "gpt2" else "pca")
    assert "kept random" not in report.counts()
    for path, value in harness.weights(teacher).items():
        np.testing.assert_array_equal(value, before[path])


def test_untied_llama_head_is_folded_exactly_with_any_final_gain():
    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family, final_gain_one=False)
    student = build_student(teacher)
    guide(teacher, student, norm="fold")
    x = harness.inputs(family)
    assert _relative_error(harness.logits(student, x), harness.logits(teacher, x)) < 1e-5


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("branch", ["attention", "mlp"])
def test_narrow_first_block_reproduces_kept_heads_and_neurons(name, branch):
    family = harness.FAMILIES[name]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, **family.narrow)
    report = guide(teacher, student, blocks="first", norm="fold")
    m = report.projection.matrix
    t_dims = report_dims(teacher)
    s_dims = report_dims(student)
    heads, _ = gqa_head_indices(t_dims["h"], t_dims["g"], s_dims["h"], s_dims["g"])
    neurons = uniform_indices(t_dims["f"], s_dims["f"])
    # A teacher copy whose block keeps only one branch, and in it only the
    # heads and neurons the student kept.
    restricted = harness.clone(teacher)
    t_block = family.block.format(0) + "/"
    if branch == "attention":
        harness.zero(restricted, [t_block + p for p in family.mlp_output])
        harness.keep_only(restricted, t_block + family.attention_output[0], family.head_axis, heads)
    else:
        harness.zero(restricted, [t_block + p for p in family.attention_output])
        harness.keep_only(restricted, t_block + family.mlp_output[0], 0, neurons)
    pruned_student = harness.clone(student)
    if branch == "attention":
        harness.zero(pruned_student, [t_block + p for p in family.mlp_output])
    else:
        harness.zero(pruned_student, [t_block + p for p in family.attention_output])
    x_s = np.random.default_rng(1).normal(size=(2, harness.SEQ, m.shape[1])).astype("float32")
    x_hat = (x_s.astype(np.float64) @ m.T).astype("float32")
    out_s = keras.ops.convert_to_numpy(pruned_student.get_layer(family.block.format(0))(x_s))
    out_t = keras.ops.convert_to_numpy(restricted.get_layer(family.block.format(0))(x_hat))
    np.testing.assert_allclose(out_s - x_s, (out_t - x_hat) @ m, atol=2e-5, rtol=1e-4)


def report_dims(backbone):
    from keras_guide.adapters import adapter_for

    d = adapter_for(backbone).dims(backbone)
    return {"h": d.num_heads, "g": d.num_key_value_heads, "f": d.intermediate_dim}


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_default_norm_keeps_the_diagonal_of_the_projected_gain(name):
    family = harness.FAMILIES[name]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, **family.narrow)
    report = guide(teacher, student)
    m = report.projection.matrix.astype(np.float64)
    ratio = np.sqrt(m.shape[0] / m.shape[1])
    t, s = harness.weights(teacher), harness.weights(student)
    entries = report.as_dict()["weights"]
    gains = [e for e in entries
             if e["how"] == "diagonal" and e["student"].endswith(("gamma", "scale"))]
    # Every norm of the guided block, and the final one, keeps its own gain
    # (rescaled, nothing folded into the readers).
    assert len(gains) >= 3 and not any(e["how"] == "folded" for e in entries)
    for e in gains:
        gamma = t[e["teacher"]].astype(np.float64)
        expected = ratio * np.diag(m.T @ np.diag(gamma) @ m)
        np.testing.assert_allclose(s[e["student"]], expected, rtol=1e-5, atol=1e-6)


def test_gemma_embedding_scaling_keeps_teacher_magnitude():
    family = harness.FAMILIES["gemma"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, **family.narrow)
    report = guide(teacher, student)
    e_t = keras.ops.convert_to_numpy(teacher.token_embedding.embeddings).astype(np.float64)
    e_s = keras.ops.convert_to_numpy(student.token_embedding.embeddings).astype(np.float64)
    np.testing.assert_allclose(e_s * np.sqrt(8), e_t @ report.projection.matrix * np.sqrt(16), rtol=1e-5, atol=1e-6)


FINAL_NORMS = {"gpt2": "layer_norm", "gemma": "final_normalization", "qwen": "sequence_output_layernorm"}


@pytest.mark.parametrize("name", sorted(FINAL_NORMS))
def test_narrow_final_norm_and_tied_head_match_teacher_at_unit_gain(name):
    family = harness.FAMILIES[name]
    teacher = harness.make_teacher(family)
    zero_shift = [w.path for w in teacher.weights if w.path == "layer_norm/beta"]
    harness.zero(teacher, zero_shift)
    student = build_student(teacher, **family.narrow)
    m = guide(teacher, student).projection.matrix
    x_s = np.random.default_rng(2).normal(size=(2, harness.SEQ, m.shape[1])).astype("float32")
    x_hat = (x_s.astype(np.float64) @ m.T).astype("float32")

    def head(backbone, x):
        h = backbone.get_layer(FINAL_NORMS[name])(x)
        return keras.ops.convert_to_numpy(backbone.token_embedding(h, reverse=True))

    np.testing.assert_allclose(head(student, x_s), head(teacher, x_hat), atol=2e-4, rtol=1e-3)


def test_gqa_teacher_maps_to_gqa_student_groups():
    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, hidden_dim=8, num_heads=2, num_key_value_heads=1, intermediate_dim=12, num_layers=1)
    guide(teacher, student, projection="select", norm="reset")
    query_t = keras.ops.convert_to_numpy(teacher.get_layer("transformer_layer_0").weights[0])
    paths = {w.path: keras.ops.convert_to_numpy(w) for w in student.weights}
    t_paths = {w.path: keras.ops.convert_to_numpy(w) for w in teacher.weights}
    heads, kv = gqa_head_indices(8, 2, 2, 1)
    dims = uniform_indices(32, 8)
    q = paths["transformer_layer_0/self_attention/query/kernel"]
    k = paths["transformer_layer_0/self_attention/key/kernel"]
    np.testing.assert_allclose(q, t_paths["transformer_layer_0/self_attention/query/kernel"][dims][:, heads])
    np.testing.assert_allclose(k, t_paths["transformer_layer_0/self_attention/key/kernel"][dims][:, kv])
    assert list(heads // 4) == [kv[0]] * 2 and query_t.shape == (32, 8, 4)


def test_bert_post_layer_norm_is_exact_for_selection_approximate_for_pca():
    family = harness.FAMILIES["bert"]
    teacher = harness.make_teacher(family)
    x = harness.inputs(family)
    reference = harness.logits(teacher, x)
    selected = build_student(teacher)
    guide(teacher, selected, projection="select")
    assert _relative_error(harness.logits(selected, x), reference) < 1e-5
    rotated = build_student(teacher)
    guide(teacher, rotated, projection="pca")
    approx = harness.logits(rotated, x)
    # Post-LN gains are kept as diag(Mᵀ diag(γ) M): not exact once M rotates
    # (gains here spread by ±30 %), yet the logits stay well aligned.
    assert _relative_error(approx, reference) > 1e-4
    cosine = np.sum(approx * reference) / np.linalg.norm(approx) / np.linalg.norm(reference)
    assert cosine > 0.8
    # With unit gains the diagonal approximation is exact again.
    plain = harness.make_teacher(family)
    for w in plain.weights:
        if w.path.endswith("gamma"):
            w.assign(np.ones(w.shape, w.dtype))
    rotated = build_student(plain)
    guide(plain, rotated, projection="pca")
    assert _relative_error(harness.logits(rotated, x), harness.logits(plain, x)) < 1e-5


def test_layer_map_uniform_first_and_explicit():
    family = harness.FAMILIES["gpt2"]
    config = dict(family.config, num_layers=4)
    import keras_hub

    teacher = keras_hub.models.GPT2Backbone(**config)
    student = build_student(teacher, num_layers=2)
    for layer_map, expected in (("uniform", [0, 2]), ("first", [0, 1]), ([3, 1], [3, 1])):
        report = guide(teacher, student, layer_map=layer_map, projection="select", norm="reset")
        assert report.layer_map == expected
        for s_index, t_index in enumerate(expected):
            s_kernel = student.get_layer(f"transformer_layer_{s_index}")._feedforward_output_dense.kernel
            t_kernel = teacher.get_layer(f"transformer_layer_{t_index}")._feedforward_output_dense.kernel
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(s_kernel), keras.ops.convert_to_numpy(t_kernel))


def test_blocks_first_keeps_later_blocks_random_and_reports_everything():
    family = harness.FAMILIES["gpt2"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, **dict(family.narrow, num_layers=2))
    before = harness.weights(student)
    report = guide(teacher, student, blocks="first")
    after = harness.weights(student)
    table = report.as_dict()["weights"]
    assert {e["student"] for e in table} == set(after)
    for e in table:
        changed = not np.array_equal(before[e["student"]], after[e["student"]])
        if e["how"] == "kept random":
            assert not changed and e["student"].startswith("transformer_layer_1/")
        elif e["student"].endswith(("kernel", "embeddings")):
            assert changed, e
    assert 0 < report.explained_variance < 1
    assert "kept random" in str(report) and "explained variance" in str(report)


def test_regularize_attaches_shared_guide_regularizers():
    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, **family.narrow)
    guide(teacher, student, regularize=0.5)
    regs = {id(w.regularizer.strength) for w in student.weights if w.regularizer is not None}
    assert len(regs) == 1
    assert float(sum(keras.ops.convert_to_numpy(l) for l in student.losses)) == pytest.approx(0.0, abs=1e-7)
    w = student.token_embedding.embeddings
    w.assign(w + 1.0)
    assert float(sum(keras.ops.convert_to_numpy(l) for l in student.losses)) == pytest.approx(0.5, rel=1e-4)


def test_task_models_are_accepted_and_student_shares_preprocessor():
    import keras_hub

    family = harness.FAMILIES["gpt2"]
    teacher = keras_hub.models.GPT2CausalLM(backbone=harness.make_teacher(family), preprocessor=None)
    student = build_student(teacher, **family.narrow)
    assert isinstance(student, keras_hub.models.GPT2CausalLM)
    report = guide(teacher, student)
    assert report.family == "gpt2"


def _bad_cases():
    import keras_hub

    gpt2 = harness.FAMILIES["gpt2"]
    llama = harness.FAMILIES["llama"]
    return [
        ("gpt2", lambda t: keras_hub.models.GPT2Backbone(**dict(gpt2.config, vocabulary_size=65)), r"vocabularies differ \(64 vs 65\)"),
        ("gpt2", lambda t: build_student(t, hidden_dim=32, num_heads=8), r"wider than the teacher.*hidden_dim: student 32 > teacher 16"),
        ("gpt2", lambda t: build_student(t, intermediate_dim=64), r"intermediate_dim: student 64 > teacher 32"),
        ("gpt2", lambda t: keras_hub.models.LlamaBackbone(**llama.config), r"different families"),
        ("gpt2", lambda t: keras.Sequential([keras.layers.Dense(2)]), r"not built"),
        ("llama", lambda t: build_student(t, hidden_dim=16, num_heads=8, num_key_value_heads=2), r"head_dim 2, the teacher 4.*rotary"),
        ("llama", lambda t: build_student(t, num_heads=8, num_key_value_heads=1), r"groups cannot grow"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_input_is_refused_and_teacher_untouched(case):
    name, make_student, match = _bad_cases()[case]
    teacher = harness.make_teacher(harness.FAMILIES[name])
    before = harness.weights(teacher)
    student = make_student(teacher)
    with pytest.raises(ValueError, match=match):
        guide(teacher, student)
    for path, value in harness.weights(teacher).items():
        np.testing.assert_array_equal(value, before[path])


def test_unsupported_family_lists_supported_ones():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"No GUIDE adapter for Sequential.*gpt2.*llama.*gemma.*bert.*qwen.*qwen3"):
        guide(model, model)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_given_matrix_guides_as_the_projection_it_equals(name):
    family = harness.FAMILIES[name]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, **family.narrow)
    m = guide(teacher, student).projection.matrix
    expected = harness.weights(student)
    report = guide(teacher, student, projection=np.asarray(m))
    assert report.options["projection"] == "given"
    assert report.projection.kind == "given"
    for path, value in harness.weights(student).items():
        np.testing.assert_array_equal(value, expected[path])
    with pytest.raises(ValueError, match=r"given projection has shape \(4, 2\)"):
        guide(teacher, student, projection=np.eye(4)[:, :2])


def test_build_student_rejects_unknown_sizes():
    teacher = harness.make_teacher(harness.FAMILIES["gpt2"])
    with pytest.raises(ValueError, match=r"no size \['num_key_value_heads'\]"):
        build_student(teacher, num_key_value_heads=2)


@pytest.mark.parametrize("task", [False, True])
def test_frozen_teacher_gives_a_trainable_student_with_guide_regularizers(task):
    import keras_hub

    from keras_guide.regularizers import guide_regularizers

    teacher = harness.make_teacher(harness.FAMILIES["gpt2"])
    if task:
        teacher = keras_hub.models.GPT2CausalLM(backbone=teacher, preprocessor=None)
    teacher.trainable = False  # frozen, as beside a Distiller
    student = build_student(teacher, **harness.FAMILIES["gpt2"].narrow)
    assert student.trainable and all(w.trainable for w in student.weights)
    guide(teacher, student, regularize=1e-2)
    assert len(guide_regularizers(student)) == len(student.trainable_weights)
    assert not teacher.trainable and not teacher.trainable_weights


# Each family's sizes written out by hand from the harness configs: hidden,
# layers, query heads, key/value heads, head width, MLP neurons, positions.
_GPT2_DIMS = (16, 2, 4, 4, 4, 32, 12)
_LLAMA_DIMS = (32, 2, 8, 2, 4, 24, None)
EXPECTED_DIMS = {
    "gpt2": (_GPT2_DIMS, False),
    "bert": (_GPT2_DIMS, False),
    "llama": (_LLAMA_DIMS, True),
    "qwen": (_LLAMA_DIMS, True),
    # Gemma's config counts gate and up widths: 48 is 24 neurons.
    "gemma": ((16, 2, 4, 2, 4, 24, None), True),
    "qwen3": ((16, 2, 4, 2, 8, 24, None), True),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_DIMS))
def test_dims_read_through_config_keys(name):
    from keras_guide.adapters import adapter_for
    from keras_guide.adapters.base import Dims

    teacher = harness.make_teacher(harness.FAMILIES[name])
    sizes, rotary = EXPECTED_DIMS[name]
    expected = Dims(64, *sizes, rotary=rotary)
    assert adapter_for(teacher).dims(teacher) == expected


def test_report_rows_are_frozen_and_match_as_dict():
    import dataclasses

    from keras_guide.guide import ReportRow

    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, **dict(family.narrow, num_layers=2))
    report = guide(teacher, student, blocks="first")
    rows = report.entries
    assert all(isinstance(row, ReportRow) for row in rows)
    paths = [row.student for row in rows]
    assert sorted(paths) == sorted(w.path for w in student.weights)
    assert report.as_dict()["weights"] == [dataclasses.asdict(row) for row in rows]
    assert sum(report.counts().values()) == len(student.weights)
    random_rows = [row for row in rows if row.how == "kept random"]
    assert random_rows
    assert all(r.teacher is None and r.teacher_shape is None for r in random_rows)
    table = "token_embedding/embeddings"
    assert rows[0] == ReportRow(table, table, "pca", (64, 32), (64, 16))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rows[0].how = "copied"


def test_backbone_of_and_shared_adapter():
    import keras_hub

    from keras_guide.adapters import backbone_of
    from keras_guide.adapters import shared_adapter

    gpt2 = harness.make_teacher(harness.FAMILIES["gpt2"])
    task = keras_hub.models.GPT2CausalLM(backbone=gpt2, preprocessor=None)
    llama = harness.make_teacher(harness.FAMILIES["llama"])
    assert backbone_of(task) is gpt2 and backbone_of(gpt2) is gpt2
    assert shared_adapter(gpt2, build_student(gpt2)).family == "gpt2"
    assert shared_adapter(gpt2, llama) is None
