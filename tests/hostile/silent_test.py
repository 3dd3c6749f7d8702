"""The last silent cases and raw tracebacks below the commands: each is
refused with one named error before anything is modified, and the models
and inputs are left as they were.

- `Distiller(student, student)` (and a student sharing the teacher's weights);
- float16 and mixed_float16 students, and a mixed_float16 teacher, whose
  forward pass overflows: found on the first batch, before any weight moves;
- float token ids and float labels (truncated before), a negative strength,
  `α` or `τ` assigned after construction;
- calibration segment ids of -1 or beyond the segments, `calibration=5`, a
  table given as a list; out-of-vocabulary ids under padding are no longer
  looked up (an index error on TensorFlow and PyTorch).
"""

import keras
import numpy as np
import pytest

import keras_guide
from keras_guide.calibration import calibration_batches
from keras_guide.distillation import Distiller
from keras_guide.initializers import GuidedInitializer
from keras_guide.initializers import pca_projection
from keras_guide.regularizers import GuideRegularizer
from tests.harness import models as tiny

V = tiny.VOCAB


def test_the_same_model_as_teacher_and_student_is_refused():
    student = tiny.gpt2(hidden=8, seed=1)
    with pytest.raises(
        ValueError,
        match=r"`teacher` and `student` are the same "
        r"model .*would train nothing",
    ):
        Distiller(student, student)
    assert student.trainable  # not frozen by the refused call
    # A student built on the teacher's own layers shares its weights.
    teacher = tiny.dense_lm(seed=0)
    inputs = keras.Input((None,), dtype="int32")
    hidden = teacher.get_layer("embed")(inputs)
    sharing = keras.Model(inputs, keras.layers.Dense(12, name="own_head")(hidden))
    with pytest.raises(
        ValueError,
        match=r"The student shares 1 trainable weights "
        r"with the teacher \(e.g. `embed/",
    ):
        Distiller(teacher, sharing)
    assert teacher.trainable


def _overflowing(model):
    """Weights that fit float16 (|w| ≤ 255) whose activations do not (the
    residual stream passes 65,504 in the first block)."""
    rng = np.random.default_rng(0)
    for weight in model.backbone.weights:
        if len(weight.shape) >= 2:
            weight.assign(
                (255 * rng.standard_normal(weight.shape))
                .clip(-255, 255)
                .astype(weight.dtype)
            )
    return model


@pytest.mark.parametrize(
    "role, policy",
    [
        ("student", "float16"),
        ("student", "mixed_float16"),
        ("teacher", "mixed_float16"),
    ],
)
def test_a_float16_forward_pass_that_overflows_is_found_before_training(role, policy):
    teacher = tiny.gpt2(hidden=16, seed=0, dtype=policy if role == "teacher" else None)
    student = tiny.gpt2(hidden=8, seed=1, dtype=policy if role == "student" else None)
    _overflowing(teacher if role == "teacher" else student)
    x, y, w = tiny.lm_batch()
    for train in ("fit", "train_on_batch"):
        distiller = Distiller(teacher, student)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
        before_s, before_t = tiny.weights_bytes(student), tiny.weights_bytes(teacher)
        with pytest.raises(
            FloatingPointError,
            match=(
                rf"The {role}'s logits on the first batch are not finite .* its "
                rf"dtype policy {policy} computes in float16.* Nothing was "
                rf"trained: run the {role} in float32 or bfloat16"
            ),
        ):
            if train == "fit":
                distiller.fit(x, y, sample_weight=w, verbose=0)
            else:
                distiller.train_on_batch(x, y, sample_weight=w)
        assert tiny.weights_bytes(student) == before_s
        assert tiny.weights_bytes(teacher) == before_t


def test_a_float16_student_that_fits_passes_the_check():
    teacher, student = (
        tiny.gpt2(hidden=16, seed=0),
        tiny.gpt2(hidden=8, seed=1, dtype="float16"),
    )
    distiller = Distiller(teacher, student)
    x, y, _ = tiny.lm_batch()
    distiller.check_half_precision(x, y)


@pytest.mark.parametrize("where", ["token_ids", "labels"])
def test_float_ids_and_labels_are_refused_not_truncated(gpt2_pair, where):
    teacher, student = gpt2_pair
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y, w = tiny.lm_batch()
    if where == "token_ids":
        x = {**x, "token_ids": x["token_ids"] + 0.7}
        name = "token_ids"
    else:
        y = y + 0.7
        name = "y"
    inputs = (dict(x), y.copy())
    before = tiny.weights_bytes(student)
    for call in (
        lambda: distiller.fit(x, y, sample_weight=w, verbose=0),
        lambda: distiller.train_on_batch(x, y, sample_weight=w),
        lambda: distiller.evaluate(x, y, sample_weight=w, verbose=0),
    ):
        with pytest.raises(
            ValueError,
            match=rf"`{name}` must hold integer .*its "
            r"dtype is float",
        ):
            call()
    assert tiny.weights_bytes(student) == before
    np.testing.assert_array_equal(x["token_ids"], inputs[0]["token_ids"])
    np.testing.assert_array_equal(y, inputs[1])


def test_float_features_and_distributions_are_still_taken():
    # A model of float features (not tokens), with one-hot float targets.
    def classifier(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((5,))
        return keras.Model(inputs, keras.layers.Dense(3)(inputs))

    distiller = Distiller(classifier(0), classifier(1))
    distiller.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    assert np.isfinite(distiller.fit(x, y, verbose=0).history["loss"][-1])


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            "strength",
            r"`strength` must be a finite, non-negative number \(a "
            r"GuideRegularizer's, as training applies it\).*Received: "
            r"strength=-1.0",
        ),
        (
            "student_loss_weight",
            r"`student_loss_weight` must be in \[0, 1.0\]. "
            r"Received: student_loss_weight=-0.5",
        ),
        (
            "temperature",
            r"`temperature` must be finite and > 0. Received: "
            r"temperature=-2.0",
        ),
    ],
)
def test_settings_assigned_after_construction_are_checked_where_applied(
    setting, message
):
    teacher = tiny.dense_lm(seed=0)
    regularizer = GuideRegularizer(np.zeros((6, 12), "float32"), strength=0.1)
    student = tiny.dense_lm(seed=1, kernel_regularizer=regularizer)
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer="adam")
    variable = {
        "strength": regularizer.strength,
        "student_loss_weight": distiller.student_loss_weight,
        "temperature": distiller.temperature,
    }[setting]
    variable.assign(
        {"strength": -1.0, "student_loss_weight": -0.5, "temperature": -2.0}[setting]
    )
    x, y, w = tiny.token_batch()
    before = tiny.weights_bytes(student)
    for call in (
        lambda: distiller.fit(x, y, sample_weight=w, verbose=0),
        lambda: distiller.train_on_batch(x, y, sample_weight=w),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    assert tiny.weights_bytes(student) == before


NAMES = ["token_ids", "segment_ids", "padding_mask"]


def _calibration(segment=0, pad_id=0):
    ids = np.tile(np.arange(1, 9, dtype="int32"), (2, 1))
    mask = np.ones_like(ids)
    mask[:, -2:] = 0
    ids[:, -2:] = pad_id
    return {
        "token_ids": ids,
        "segment_ids": np.full_like(ids, segment),
        "padding_mask": mask,
    }


@pytest.mark.parametrize(
    "calibration, message",
    [
        (
            _calibration(segment=-1),
            r"`segment_ids` must lie in \[0, 2\) .*min -1, "
            r"max -1\); -1 would wrap to the last segment",
        ),
        (_calibration(segment=2), r"`segment_ids` must lie in \[0, 2\) .*max 2"),
        (5, r"`calibration` must be token ids .* Received: calibration=5 of type int"),
        ("text", r"`calibration` must be token ids .* of type str"),
    ],
)
def test_calibration_is_checked_before_the_teacher_runs(calibration, message):
    kept = (
        {k: v.copy() for k, v in calibration.items()}
        if isinstance(calibration, dict)
        else calibration
    )
    with pytest.raises(ValueError, match=message):
        calibration_batches(calibration, NAMES, V, num_segments=2)
    if isinstance(calibration, dict):
        for key, value in kept.items():
            np.testing.assert_array_equal(calibration[key], value)


def test_out_of_vocabulary_ids_under_padding_are_not_looked_up(gpt2_pair):
    # Padding may hold any id (masked, it counts for nothing), but the
    # teacher used to look it up: an index error on TensorFlow and PyTorch.
    from keras_guide.calibration import collect_statistics

    teacher, _ = gpt2_pair
    names = ["token_ids", "padding_mask"]
    padded = {k: v for k, v in _calibration(pad_id=10 * V).items() if k in names}
    kept = {k: v.copy() for k, v in padded.items()}
    clean = {
        **padded,
        "token_ids": np.where(padded["padding_mask"] == 1, padded["token_ids"], 0),
    }
    stats = collect_statistics(teacher, calibration_batches(padded, names, V))
    want = collect_statistics(teacher, calibration_batches(clean, names, V))
    np.testing.assert_array_equal(stats.gram, want.gram)
    assert stats.tokens == 12
    for key, value in kept.items():
        np.testing.assert_array_equal(padded[key], value)


def test_guide_names_bad_calibration(gpt2_pair):
    teacher, student = gpt2_pair
    before = tiny.weights_bytes(student)
    for calibration, message in (
        (5, "`calibration` must be token ids"),
        (
            np.full((2, 8), V),
            "outside the teacher's "
            r"vocabulary \[0, 64\)",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            keras_guide.guide(teacher, student, calibration=calibration)
    assert tiny.weights_bytes(student) == before


def test_a_table_given_as_a_list_is_taken_or_named():
    table = np.random.default_rng(0).normal(size=(20, 6))
    np.testing.assert_array_equal(
        pca_projection(table.tolist(), 3).matrix, pca_projection(table, 3).matrix
    )
    value = GuidedInitializer(table.tolist(), {1: pca_projection(table, 3)})(
        (20, 3), "float32"
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(value),
        table @ pca_projection(table, 3).matrix,
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(
        ValueError,
        match=r"Table `table` given as a list must be "
        r"rectangular",
    ):
        pca_projection([[1.0, 2.0], [3.0]], 1)
