"""Hostile inputs to the public API (`guide`, `GuideRegularizer`,
`set_guide_strength`, `GuideSchedule`): each gets a clear error naming what
was wrong, and the teacher and the student are left as they were."""

import keras
import numpy as np
import pytest

from keras_guide import GuideRegularizer
from keras_guide import build_student
from keras_guide import guide
from keras_guide import set_guide_strength
from keras_guide.callbacks import GuideSchedule
from tests.harness import models as tiny


def _values(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


def _same(model, values):
    return all(
        np.array_equal(keras.ops.convert_to_numpy(w), v, equal_nan=True)
        for w, v in zip(model.weights, values)
    )


@pytest.fixture()
def pair():
    teacher = tiny.gpt2(hidden=16, layers=2)
    student = build_student(
        teacher, hidden_dim=8, num_layers=2, num_heads=1, intermediate_dim=16
    )
    return teacher, student


def test_a_student_that_is_or_shares_the_teacher_is_refused(pair):
    import keras_hub

    teacher, _ = pair
    before = _values(teacher)
    sharing = keras_hub.models.GPT2CausalLM(
        backbone=teacher.backbone, preprocessor=None
    )
    for student in (teacher, teacher.backbone, sharing):
        with pytest.raises(
            ValueError,
            match=r"would overwrite the teacher.*"
            r"build_student.*Received: student=",
        ):
            guide(teacher, student)
    assert _same(teacher, before)


@pytest.mark.parametrize(
    "part",
    [
        "transformer_layer_0/self_attention_layer_norm/gamma",
        "transformer_layer_1/feedforward_layer_norm/beta",
        "layer_norm/gamma",
        "transformer_layer_0/self_attention/query/kernel",
        "transformer_layer_1/feedforward_output_dense/bias",
        "token_embedding/embeddings",
        "position_embedding/embeddings",
    ],
)
@pytest.mark.parametrize("norm", ["diagonal", "fold"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_teacher_weight_is_refused_by_name(pair, part, norm, bad):
    teacher, student = pair
    weight = next(w for w in teacher.backbone.weights if w.path == part)
    value = keras.ops.convert_to_numpy(weight).copy()
    value.flat[1] = bad
    weight.assign(value)
    teacher_before, student_before = _values(teacher), _values(student)
    with pytest.raises(
        ValueError,
        match=rf"Teacher weight `{part}` of shape "
        rf"{tuple(value.shape)!s}".replace("(", r"\(").replace(")", r"\)")
        + " holds 1 NaN or Inf",
    ):
        guide(teacher, student, norm=norm)
    assert _same(teacher, teacher_before) and _same(student, student_before)


def test_a_non_finite_teacher_weight_is_refused_before_calibration(pair):
    teacher, student = pair
    weight = teacher.backbone.weights[-1]
    weight.assign(np.full(weight.shape, np.nan, "float32"))
    student_before = _values(student)
    with pytest.raises(ValueError, match=f"Teacher weight `{weight.path}`"):
        guide(
            teacher,
            student,
            projection="activations",
            calibration=np.ones((4, 8), "int32"),
        )
    assert _same(student, student_before)


@pytest.mark.parametrize(
    "strength", [-1, -1e-9, float("nan"), float("inf"), True, "0.1", [0.1]]
)
def test_guide_refuses_a_strength_that_is_not_finite_and_non_negative(pair, strength):
    teacher, student = pair
    before = _values(student)
    with pytest.raises(
        ValueError,
        match=r"`regularize` must be a finite, "
        r"non-negative number.*Received: regularize=",
    ):
        guide(teacher, student, regularize=strength)
    assert _same(student, before)
    assert guide(teacher, student, regularize=0).options["regularize"] == 0


def test_regularizer_strengths_are_checked_as_numbers_variables_and_updates(pair):
    with pytest.raises(ValueError, match="`strength` must be a finite, non-negative"):
        GuideRegularizer(np.zeros(3), -0.5)
    with pytest.raises(ValueError, match="Received: strength=nan"):
        GuideRegularizer(np.zeros(3), keras.Variable(float("nan")))
    with pytest.raises(
        ValueError,
        match=r"The GuideRegularizer `target` of shape "
        r"\(3,\) holds 1 NaN or Inf values; pass finite values",
    ):
        GuideRegularizer(np.array([0.0, np.inf, 1.0]), 0.1)
    teacher, student = pair
    guide(teacher, student, regularize=0.1)
    with pytest.raises(ValueError, match="Received: value=-1.0"):
        set_guide_strength(student, -1.0)
    strength = student.backbone.weights[0].regularizer.strength
    assert float(keras.ops.convert_to_numpy(strength)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"guide_strength": -1.0}, r"`guide_strength` must be a finite, non-negative"),
        ({"guide_strength": (1.0, -0.5)}, r"at its start and end.*guide_strength=-0.5"),
        ({"guide_strength": (float("nan"), 0.0)}, r"guide_strength=nan"),
        ({"kd_weight": float("inf")}, r"`kd_weight` must be a finite"),
        ({"kd_weight": (0.0, -1)}, r"kd_weight=-1.0"),
        ({"temperature": 0.0}, r"temperature schedule must stay finite and > 0"),
        ({"temperature": (2.0, -1.0)}, r"at its start and end.*temperature=-1.0"),
        ({"temperature": True}, r"temperature=True"),
    ],
)
def test_a_schedule_is_refused_when_any_value_in_its_range_is(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuideSchedule(10, kind="linear", **kwargs)


def test_a_callable_schedule_is_refused_before_the_step_it_goes_negative(pair):
    teacher, student = pair
    guide(teacher, student, regularize=0.1)
    student.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y, weight = tiny.lm_batch(rows=8)
    schedule = GuideSchedule(4, guide_strength=lambda step: 0.5 * (3 - step))
    with pytest.raises(
        ValueError,
        match=r"`guide_strength` must be a finite, "
        r"non-negative number at step 4",
    ):
        student.fit(
            x,
            y,
            sample_weight=weight,
            batch_size=1,
            epochs=1,
            verbose=0,
            callbacks=[schedule],
        )
    strength = student.backbone.weights[0].regularizer.strength
    assert float(keras.ops.convert_to_numpy(strength)) >= 0.0
    assert all(np.all(np.isfinite(v)) for v in _values(student))


def test_a_numpy_projection_works_and_a_bad_one_is_refused(pair):
    teacher, student = pair
    matrix = np.eye(16)[:, ::2]
    assert guide(teacher, student, projection=matrix).options["projection"] == "given"
    before = _values(student)
    bad = matrix.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="The projection `projection` of shape"):
        guide(teacher, student, projection=bad)
    with pytest.raises(ValueError, match=r"need \(16, 8\)"):
        guide(teacher, student, projection=np.eye(16)[:, :7])
    with pytest.raises(ValueError, match="finite, non-negative row weights"):
        guide(teacher, student, token_weights=np.full(64, np.nan))
    assert _same(student, before)


@pytest.mark.parametrize("ids", [64, -1])
def test_calibration_ids_outside_the_vocabulary_are_refused(pair, ids):
    teacher, student = pair
    before = _values(student)
    with pytest.raises(ValueError, match=r"outside the teacher's vocabulary \[0, 64\)"):
        guide(
            teacher,
            student,
            projection="activations",
            calibration=np.full((4, 8), ids, "int32"),
        )
    assert _same(student, before)


@pytest.mark.parametrize(
    "teacher_dtype, student_dtype, value",
    [(None, "float16", 7e4), ("float64", "float32", 1e39)],
)
def test_a_student_is_not_guided_into_infinity(teacher_dtype, student_dtype, value):
    import keras_hub

    from tests.harness import families as harness

    if teacher_dtype == "float64" and keras.backend.backend() == "jax":
        pytest.skip(
            "JAX holds float64 weights in float32 unless jax_enable_x64 is "
            "set; there 1e39 is an inf teacher weight, refused as such"
        )
    family = harness.FAMILIES["llama"]
    teacher = keras_hub.models.LlamaBackbone(**family.config, dtype=teacher_dtype)
    table = teacher.token_embedding.embeddings
    table.assign(keras.ops.convert_to_numpy(table) * 0 + value)
    student = build_student(
        teacher,
        dtype=student_dtype,
        hidden_dim=16,
        num_heads=4,
        num_key_value_heads=2,
        intermediate_dim=12,
        num_layers=1,
    )
    before = harness.weights(student)
    with pytest.raises(
        ValueError,
        match=r"guided `token_embedding/embeddings` "
        rf"reaches .* beyond {student_dtype}'s largest",
    ):
        guide(teacher, student, projection="select")
    for path, value in harness.weights(student).items():
        np.testing.assert_array_equal(value, before[path])


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(layer_map=[0.7]), "whole teacher block indices"),
        (dict(layer_map=[True]), "whole teacher block indices"),
        (dict(layer_map=3), "whole teacher block indices"),
        (dict(center="yes"), "`center` must be True or False"),
        (dict(rescale=2), "`rescale` must be True or False"),
    ],
)
def test_option_types_are_checked_not_coerced(options, message):
    from tests.harness import families as harness

    teacher = harness.make_teacher(harness.FAMILIES["llama"], final_gain_one=False)
    student = build_student(
        teacher,
        hidden_dim=16,
        num_heads=4,
        num_key_value_heads=2,
        intermediate_dim=12,
        num_layers=1,
    )
    before = harness.weights(student)
    with pytest.raises(ValueError, match=message):
        guide(teacher, student, **options)
    for path, value in harness.weights(student).items():
        np.testing.assert_array_equal(value, before[path])
    with pytest.raises(ValueError, match="The teacher must be a built KerasHub"):
        guide(None, student)


def test_a_regularizer_target_beyond_float32_is_refused():
    with pytest.raises(
        ValueError,
        match=r"`target` of shape \(2,\) has entries "
        r"beyond float32 \(largest magnitude 1e\+39",
    ):
        GuideRegularizer(np.array([1.0, 1e39]), 0.1)


def _guide_state(model):
    return [v for v in model.variables if v.name.startswith("guide_")]


def test_guiding_twice_replaces_the_first_guides_pull_and_state(pair):
    from keras_guide.regularizers import guide_regularizers

    teacher, student = pair
    guide(teacher, student, regularize=0.1)
    first, state = guide_regularizers(student), len(_guide_state(student))
    assert state == len(first) + 1  # a target each, one shared strength
    guide(teacher, student, regularize=0.2)
    second = guide_regularizers(student)
    assert len(second) == len(first) and not {id(r) for r in first} & {
        id(r) for r in second
    }
    assert len(_guide_state(student)) == state  # the first guide's state is gone
    strength = float(keras.ops.convert_to_numpy(second[0].strength))
    assert strength == pytest.approx(0.2)
    # Guided again without `regularize`: no pull toward the replaced values.
    guide(teacher, student)
    assert guide_regularizers(student) == [] and _guide_state(student) == []


@pytest.mark.parametrize("layer_map", ["first", "uniform"])
def test_a_student_deeper_than_the_teacher_is_refused_by_a_named_map(layer_map):
    teacher = tiny.gpt2(hidden=16, layers=1)
    student = build_student(
        teacher, hidden_dim=8, num_layers=2, num_heads=1, intermediate_dim=16
    )
    before = _values(student)
    with pytest.raises(
        ValueError,
        match=r"The student has 2 blocks, the teacher 1: "
        rf'layer_map="{layer_map}".*at most 1 blocks',
    ):
        guide(teacher, student, layer_map=layer_map)
    assert _same(student, before)
    # An explicit map may repeat a teacher block; blocks="first" guides one.
    assert guide(teacher, student, layer_map=[0, 0]).layer_map == [0, 0]
    assert guide(teacher, student, layer_map="first", blocks="first").layer_map == [0]


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, True),  # every choice unset: the data-aware recipe
        (
            {"projection": "activations", "select": "uniform", "layer_map": "first"},
            True,
        ),
        ({"projection": "select", "select": "uniform", "layer_map": "first"}, False),
        ({"projection": "pca", "select": "uniform", "layer_map": "uniform"}, False),
        ({"projection": "select", "select": "uniform"}, True),  # layer_map unset
        ({"projection": "auto", "select": "uniform", "layer_map": "uniform"}, True),
    ],
)
def test_which_options_use_calibration_text(options, expected):
    from keras_guide.guide.options import GuideOptions
    from keras_guide.guide.options import takes_calibration

    assert takes_calibration(options) is expected
    # The options object agrees: calibration is accepted exactly when it is used.
    if expected:
        assert GuideOptions(**options, calibrated=True).needs_calibration
    else:
        with pytest.raises(ValueError, match="no choice uses it"):
            GuideOptions(**options, calibrated=True)
