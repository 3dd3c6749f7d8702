import keras
import numpy as np
import pytest

from keras_guide.distillation import DistillationLoss
from keras_guide.distillation import Distiller
from keras_guide.distillation import FeatureDistillation
from keras_guide.distillation import LogitsDistillation
from keras_guide.distillation import token_mean
from keras_guide.distillation.terms import from_keras_distillation_loss
from tests.harness import models as tiny


def test_keras_terms_convert_with_their_settings():
    logits = from_keras_distillation_loss(
        keras.distillation.LogitsDistillation(temperature=4.0)
    )
    assert isinstance(logits, LogitsDistillation) and logits.temperature == 4.0
    feature = from_keras_distillation_loss(
        keras.distillation.FeatureDistillation(
            teacher_layer_name="a", student_layer_name="b"
        )
    )
    assert isinstance(feature, FeatureDistillation)
    assert (feature.teacher_layer_name, feature.student_layer_name) == ("a", "b")


def test_unsupported_losses_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="loss='kl_divergence'.*Received: loss='mse'"):
        LogitsDistillation(loss="mse")
    with pytest.raises(ValueError, match="loss='mse'.*Received: loss='mae'"):
        FeatureDistillation(loss="mae")
    with pytest.raises(ValueError, match="Received: str"):
        from_keras_distillation_loss("kl_divergence")


def test_feature_term_config_round_trips_the_projection():
    matrix = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 3)))[0]
    term = FeatureDistillation(
        teacher_layer_name="t", student_layer_name="s", projection=matrix
    )
    restored = FeatureDistillation.from_config(term.get_config())
    np.testing.assert_array_equal(restored.projection, matrix)
    np.testing.assert_array_equal(restored.projection_mean, np.zeros(5))
    assert restored.teacher_layer_name == "t"


def test_projection_is_read_from_a_report():
    from keras_guide.initializers import as_projection

    matrix = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 2)))[0]

    class Report:
        projection = as_projection(matrix)

    term = FeatureDistillation(projection=Report())
    np.testing.assert_array_equal(term.projection, matrix)


def test_projection_must_be_a_matrix():
    with pytest.raises(ValueError, match=r"Received: projection of shape \(3,\)"):
        FeatureDistillation(projection=np.ones(3))


class _AbsoluteLogitError(DistillationLoss):
    """A term written outside the package: mean |z_T − z_S| over kept tokens."""

    metric_name = "abs_loss"

    def compute_loss(
        self, teacher_outputs, student_outputs, sample_weight=None, state=None
    ):
        error = keras.ops.mean(keras.ops.abs(teacher_outputs - student_outputs), -1)
        return token_mean(error, sample_weight)


def test_a_new_kind_of_term_is_one_subclass():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=3)
    terms = [LogitsDistillation(2.0), _AbsoluteLogitError()]
    distiller = Distiller(teacher, student, terms, distillation_loss_weights=[1.0, 2.0])
    distiller.compile(optimizer="sgd")
    got = distiller.evaluate(
        x, y, sample_weight=weight, batch_size=len(x), verbose=0, return_dict=True
    )
    z_t = tiny.numpy(teacher.predict(x, verbose=0)).astype(np.float64)
    z_s = tiny.numpy(student.predict(x, verbose=0)).astype(np.float64)
    absolute = tiny.masked_mean64(np.abs(z_t - z_s).mean(-1), weight)
    np.testing.assert_allclose(got["abs_loss"], absolute, rtol=1e-5)
    want = (
        0.5 * tiny.ce_reference(y, z_s, weight)
        + 0.5 * tiny.kd_reference(z_t, z_s, 2.0, weight)
        + 1.0 * absolute
    )
    np.testing.assert_allclose(got["loss"], want, rtol=2e-5)
