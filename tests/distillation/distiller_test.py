import os

import keras
import numpy as np
import pytest

from keras_guide.distillation import Distiller
from keras_guide.distillation import FeatureDistillation
from keras_guide.distillation import LogitsDistillation
from keras_guide.distillation import kd_loss
from keras_guide.distillation import offline_teacher_dataset
from keras_guide.distillation import teacher_top_k
from keras_guide.regularizers import GuideRegularizer
from tests.harness import models as tiny


def _guided_student(strength=0.3, seed=0):
    """A dense student whose head kernel is pulled toward a shifted target."""
    probe = tiny.dense_lm(seed=seed)
    target = tiny.numpy(probe.get_layer("head").kernel) + 0.5
    return tiny.dense_lm(
        seed=seed, kernel_regularizer=GuideRegularizer(target, strength)
    )


def _reference(teacher, student, x, y, weight, alpha, temperature):
    z_t = tiny.numpy(teacher.predict(x, verbose=0))
    z_s = tiny.numpy(student.predict(x, verbose=0))
    ce = tiny.ce_reference(y, z_s, weight)
    kd = tiny.kd_reference(z_t, z_s, temperature, weight)
    guide = 0.0
    kernel = student.get_layer("head").kernel
    if kernel.regularizer is not None:
        regularizer = kernel.regularizer
        guide = tiny.numpy(regularizer.strength) * np.mean(
            (tiny.numpy(kernel).astype(np.float64) - tiny.numpy(regularizer.target))
            ** 2
        )
    total = alpha * ce + (1 - alpha) * kd + guide
    return {"student_loss": ce, "kd_loss": kd, "guide_loss": guide, "loss": total}


def _evaluate(model, x, y, weight):
    """One batch, so the reported loss is the token average of the whole set."""
    return model.evaluate(
        x, y, sample_weight=weight, batch_size=len(weight), verbose=0, return_dict=True
    )


def test_loss_matches_float64_reference_with_mask_and_guide_loss():
    teacher = tiny.dense_lm(width=8, seed=1, scale=4.0)
    student = _guided_student()
    x, y, weight = tiny.token_batch()
    distiller = Distiller(
        teacher, student, LogitsDistillation(3.0), student_loss_weight=0.3
    )
    distiller.compile(optimizer="sgd")
    got = _evaluate(distiller, x, y, weight)
    want = _reference(teacher, student, x, y, weight, 0.3, 3.0)
    assert want["guide_loss"] > 0.01
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=2e-5, atol=1e-6, err_msg=key)


def test_defaults_are_half_ce_half_kd_at_temperature_one():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=3)
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer="adam")
    assert float(tiny.numpy(distiller.temperature)) == 1.0
    assert float(tiny.numpy(distiller.kd_weight)) == 0.5
    got = _evaluate(distiller, x, y, weight)
    want = _reference(teacher, student, x, y, weight, 0.5, 1.0)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=2e-5)


def test_cross_entropy_named_by_string_is_applied_to_logits():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=4)
    distiller = Distiller(teacher, student)
    distiller.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    got = _evaluate(distiller, x, y, weight)
    want = _reference(teacher, student, x, y, weight, 0.5, 2.0)
    np.testing.assert_allclose(got["student_loss"], want["student_loss"], rtol=2e-5)
    assert 0.0 <= got["accuracy"] <= 1.0


def test_gpt2_student_trains_with_defaults_and_teacher_stays_bit_identical():
    teacher = tiny.gpt2(hidden=32, layers=2, dtype="bfloat16", seed=1)
    student = tiny.gpt2(seed=0)
    x, y, weight = tiny.lm_batch()
    teacher_bytes = tiny.weights_bytes(teacher)
    student_before = tiny.weights_bytes(student)
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(
        x, y, sample_weight=weight, batch_size=4, epochs=3, shuffle=False, verbose=0
    ).history
    assert {"loss", "student_loss", "kd_loss", "guide_loss"} <= set(history)
    assert history["loss"][-1] < history["loss"][0]
    assert all(np.isfinite(history["kd_loss"]))
    assert tiny.weights_bytes(teacher) == teacher_bytes
    assert tiny.weights_bytes(student) != student_before
    np.testing.assert_allclose(
        tiny.numpy(distiller.predict(x, verbose=0)),
        tiny.numpy(student.predict(x, verbose=0)),
        rtol=1e-6,
        atol=1e-6,
    )


def _orthonormal(rows, cols, seed):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(rows, cols)))[0]


def _block_output(model, name, x):
    backbone = model.backbone
    sub = keras.Model(backbone.input, backbone.get_layer(name).output)
    return tiny.numpy(sub.predict(x, verbose=0)).astype(np.float64)


@pytest.fixture(scope="module")
def hidden_setup():
    teacher = tiny.gpt2(hidden=32, layers=2, seed=1)
    student = tiny.gpt2(seed=0)
    matrix = _orthonormal(32, 16, 2)
    mean = np.random.default_rng(3).normal(size=32) * 0.1
    projection = {"matrix": matrix, "mean": mean}
    distiller = Distiller(
        teacher,
        student,
        [
            LogitsDistillation(2.0),
            FeatureDistillation(
                teacher_layer_name="transformer_layer_1",
                student_layer_name="transformer_layer_0",
                projection=projection,
            ),
        ],
        distillation_loss_weights=[1.0, 0.5],
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    return distiller, matrix, mean


def test_hidden_states_inside_backbones_match_reference(hidden_setup):
    distiller, matrix, mean = hidden_setup
    teacher, student = distiller.teacher, distiller.student
    x, y, weight = tiny.lm_batch(seed=5)
    got = _evaluate(distiller, x, y, weight)
    h_s = _block_output(student, "transformer_layer_0", x)
    h_t = _block_output(teacher, "transformer_layer_1", x)
    hidden = tiny.masked_mean64((((h_s @ matrix.T + mean) - h_t) ** 2).mean(-1), weight)
    np.testing.assert_allclose(got["hidden_loss"], hidden, rtol=1e-4)
    z_t = tiny.numpy(teacher.predict(x, verbose=0))
    z_s = tiny.numpy(student.predict(x, verbose=0))
    want = (
        0.5 * tiny.ce_reference(y, z_s, weight)
        + 0.5 * tiny.kd_reference(z_t, z_s, 2.0, weight)
        + 0.25 * hidden
    )
    np.testing.assert_allclose(got["loss"], want, rtol=1e-4)


def test_projector_starts_as_identity_in_the_projection_basis(hidden_setup):
    distiller, matrix, mean = hidden_setup
    projector = distiller.projectors[0]
    np.testing.assert_allclose(tiny.numpy(projector.kernel), matrix.T, atol=1e-7)
    np.testing.assert_allclose(tiny.numpy(projector.bias), mean, atol=1e-7)
    student_vector = np.random.default_rng(4).normal(size=(1, 16))
    np.testing.assert_allclose(
        tiny.numpy(projector(student_vector.astype("float32"))) @ matrix
        - mean @ matrix,
        student_vector,
        atol=1e-5,
    )


def test_whole_distiller_round_trips_through_keras_file(hidden_setup, tmp_path):
    distiller, _, _ = hidden_setup
    x, y, weight = tiny.lm_batch(seed=6)
    distiller.fit(x, y, sample_weight=weight, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, Distiller)
    assert restored.teacher is not restored.student
    want = _evaluate(distiller, x, y, weight)
    got = _evaluate(restored, x, y, weight)
    for key in ("loss", "kd_loss", "hidden_loss", "student_loss"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
    assert tiny.weights_bytes(restored.projectors[0]) == tiny.weights_bytes(
        distiller.projectors[0]
    )


def test_student_exports_alone_as_keras_file_and_preset(hidden_setup, tmp_path):
    import keras_hub

    distiller, _, _ = hidden_setup
    student = distiller.student
    x, _, _ = tiny.lm_batch(seed=7)
    want = tiny.numpy(student.predict(x, verbose=0))
    path = str(tmp_path / "student.keras")
    student.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        tiny.numpy(loaded.predict(x, verbose=0)), want, atol=1e-6
    )
    assert len(loaded.weights) == len(student.weights)
    preset = str(tmp_path / "preset")
    student.save_to_preset(preset)
    from_preset = keras_hub.models.CausalLM.from_preset(preset)
    np.testing.assert_allclose(
        tiny.numpy(from_preset.predict(x, verbose=0)), want, atol=1e-6
    )
    assert (
        os.path.getsize(path)
        < 2 * sum(tiny.numpy(w).nbytes for w in student.weights) + 100_000
    )


def _evaluate_data(model, data):
    return model.evaluate(data, verbose=0, return_dict=True)


def test_offline_top_k_equals_online_with_full_vocabulary():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=8)
    distiller = Distiller(teacher, student, LogitsDistillation(1.5))
    distiller.compile(optimizer="adam")
    online = _evaluate(distiller, x, y, weight)
    data = offline_teacher_dataset(teacher, x, y, weight, k=12, batch_size=len(x))
    offline = _evaluate_data(distiller, data)
    for key in ("loss", "kd_loss", "student_loss"):
        np.testing.assert_allclose(
            offline[key], online[key], rtol=1e-5, atol=1e-6, err_msg=key
        )


def test_offline_top_k_is_the_truncated_loss_and_never_runs_the_teacher():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=9)
    distiller = Distiller(teacher, student, LogitsDistillation(1.5))
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    z_t = tiny.numpy(teacher.predict(x, verbose=0))
    z_s = tiny.numpy(student.predict(x, verbose=0))
    targets = teacher_top_k(teacher, x, k=3, batch_size=4)
    top = targets["teacher_top_k_logits"]
    # Another batch size: float32 round-off (1.4e-9 on a logit near zero seen on
    # one TensorFlow CPU), far below the gaps between the top logits (2e-4 and
    # more) that a wrong selection would show.
    np.testing.assert_allclose(top, -np.sort(-z_t, -1)[..., :3], rtol=1e-6, atol=1e-6)
    data = offline_teacher_dataset(teacher, x, y, weight, k=3, batch_size=len(x))
    offline = _evaluate_data(distiller, data)
    log_p = tiny.log_softmax64(top / 1.5)
    log_q = np.take_along_axis(
        tiny.log_softmax64(z_s / 1.5), targets["teacher_top_k_indices"], -1
    )
    want = 1.5**2 * tiny.masked_mean64(
        (np.exp(log_p) * (log_p - log_q)).sum(-1), weight
    )
    np.testing.assert_allclose(offline["kd_loss"], want, rtol=2e-5)
    assert abs(want - tiny.kd_reference(z_t, z_s, 1.5, weight)) > 1e-3
    head = teacher.get_layer("head")
    head.kernel.assign(tiny.numpy(head.kernel) * 3.0)
    again = _evaluate_data(distiller, data)
    assert again["kd_loss"] == pytest.approx(offline["kd_loss"], rel=1e-6)
    online_before = tiny.kd_reference(z_t, z_s, 1.5, weight)
    online_after = _evaluate(distiller, x, y, weight)["kd_loss"]
    assert abs(online_after - online_before) > 1e-3
    history = distiller.fit(data, epochs=3, verbose=0).history
    assert history["kd_loss"][-1] < history["kd_loss"][0]


def test_offline_tail_as_one_class_at_the_distillers_temperature():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=11)
    distiller = Distiller(teacher, student, LogitsDistillation(1.5))
    distiller.compile(optimizer="adam")
    z_t = tiny.numpy(teacher.predict(x, verbose=0)).astype(np.float64)
    z_s = tiny.numpy(student.predict(x, verbose=0)).astype(np.float64)
    data = offline_teacher_dataset(
        teacher, x, y, weight, k=3, batch_size=len(x), temperature=1.5
    )
    got = _evaluate_data(distiller, data)["kd_loss"]
    order = np.argsort(-z_t, -1)[..., :3]
    p = np.exp(tiny.log_softmax64(z_t / 1.5))
    q = np.exp(tiny.log_softmax64(z_s / 1.5))
    p_k, q_k = np.take_along_axis(p, order, -1), np.take_along_axis(q, order, -1)
    p_k = np.concatenate([p_k, 1 - p_k.sum(-1, keepdims=True)], -1)
    q_k = np.concatenate([q_k, 1 - q_k.sum(-1, keepdims=True)], -1)
    want = 1.5**2 * tiny.masked_mean64((p_k * np.log(p_k / q_k)).sum(-1), weight)
    # float32 `1 − Σ p_i` carries ~1e-7 of absolute error.
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-7)
    online = tiny.kd_reference(z_t, z_s, 1.5, weight)
    assert got <= online
    # Cached at the default τ = 2 while the Distiller trains at 1.5: the
    # normalizer does not apply, and the loss is the renormalized one.
    stale = offline_teacher_dataset(teacher, x, y, weight, k=3, batch_size=len(x))
    renormalized = offline_teacher_dataset(
        teacher, x, y, weight, k=3, batch_size=len(x), temperature=None
    )
    np.testing.assert_allclose(
        _evaluate_data(distiller, stale)["kd_loss"],
        _evaluate_data(distiller, renormalized)["kd_loss"],
        rtol=1e-6,
    )
    assert abs(_evaluate_data(distiller, renormalized)["kd_loss"] - online) > abs(
        got - online
    )


def test_offline_targets_missing_a_key_are_rejected():
    from keras_guide.distillation import offline

    targets = {
        "labels": 0,
        "teacher_top_k_logits": 0,
        "teacher_top_k_indices": 0,
        "teacher_log_normalizer": 0,
    }
    with pytest.raises(ValueError, match="teacher_temperature"):
        offline.split_targets(targets)
    with pytest.raises(ValueError, match="teacher_top_k_indices"):
        offline.split_targets({"labels": 0, "teacher_top_k_logits": 0})


def test_backup_and_restore_resumes_where_an_uninterrupted_run_ends(tmp_path):
    from keras_guide.callbacks import GuideSchedule

    x, y, weight = tiny.token_batch(rows=8, seed=10)

    def run(callbacks, epochs=4):
        distiller = Distiller(
            tiny.dense_lm(width=8, seed=1, scale=4.0), _guided_student(strength=0.5)
        )
        distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
        schedule = GuideSchedule(
            6, "linear", guide_strength=(0.5, 0.0), temperature=(3.0, 1.0)
        )
        distiller.fit(
            x,
            y,
            sample_weight=weight,
            batch_size=4,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=[schedule, *callbacks],
        )
        return distiller

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    reference = run([])
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        run([keras.callbacks.BackupAndRestore(backup), Interrupt()])
    resumed = run([keras.callbacks.BackupAndRestore(backup)])
    assert int(tiny.numpy(resumed.optimizer.iterations)) == 8
    for got, want in zip(resumed.student.weights, reference.student.weights):
        np.testing.assert_allclose(tiny.numpy(got), tiny.numpy(want), atol=1e-5)
    np.testing.assert_allclose(tiny.numpy(resumed.temperature), 1.0)


def test_errors_name_the_argument_and_the_fix():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    with pytest.raises(ValueError, match="same vocabulary.*\\(None, None, 13\\)"):
        Distiller(teacher, tiny.dense_lm(vocab=13))
    with pytest.raises(ValueError, match="Received: student_loss_weight=1.5"):
        Distiller(teacher, student, student_loss_weight=1.5)
    with pytest.raises(ValueError, match="At most one `LogitsDistillation`"):
        Distiller(teacher, student, [LogitsDistillation(), LogitsDistillation()])
    with pytest.raises(ValueError, match="one weight per distillation loss"):
        Distiller(teacher, student, [LogitsDistillation()], [1.0, 2.0])
    with pytest.raises(ValueError, match="Received: teacher of type str"):
        Distiller("teacher", student)
    with pytest.raises(ValueError, match="Received: student_layer_name='missing'"):
        Distiller(teacher, student, FeatureDistillation(student_layer_name="missing"))
    with pytest.raises(
        ValueError, match=r"\(d_teacher, d_student\) = \(8, 6\).*\(5, 3\)"
    ):
        Distiller(
            teacher,
            student,
            FeatureDistillation(
                teacher_layer_name="block",
                student_layer_name="block",
                projection=_orthonormal(5, 3, 0),
            ),
        )


# Regression tests: each shows a defect of `keras.distillation.Distiller`
# (Keras 3.15) next to this package's behaviour on the same inputs.


def _keras_distiller(teacher, student, temperature=2.0):
    distiller = keras.distillation.Distiller(
        teacher,
        student,
        keras.distillation.LogitsDistillation(temperature=temperature),
        student_loss_weight=0.5,
    )
    distiller.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return distiller


def test_regression_keras_ignores_sample_weight():
    teacher = tiny.dense_lm(width=8, seed=1, scale=4.0)
    student = tiny.dense_lm(seed=0, scale=8.0)
    x, y, _ = tiny.token_batch(seed=11)
    z_s = tiny.numpy(student.predict(x, verbose=0))
    ce = -np.take_along_axis(tiny.log_softmax64(z_s), y[..., None], -1)[..., 0]
    weight = (ce < np.median(ce)).astype("float32")  # drop the hardest tokens
    ones = np.ones_like(weight)
    masked_reference = tiny.ce_reference(y, z_s, weight)
    assert tiny.ce_reference(y, z_s) - masked_reference > 0.05
    theirs = _evaluate(_keras_distiller(teacher, student), x, y, weight)
    np.testing.assert_allclose(
        theirs["student_loss"], tiny.ce_reference(y, z_s), rtol=1e-5
    )
    ours = Distiller(teacher, student)
    ours.compile(optimizer="sgd")
    np.testing.assert_allclose(
        _evaluate(ours, x, y, weight)["student_loss"], masked_reference, rtol=2e-5
    )
    np.testing.assert_allclose(
        _evaluate(ours, x, y, ones)["student_loss"],
        tiny.ce_reference(y, z_s),
        rtol=2e-5,
    )


def test_regression_keras_drops_student_regularization_losses():
    teacher = tiny.dense_lm(width=8, seed=1, scale=4.0)
    guided, plain = _guided_student(strength=5.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=12)
    ones = np.ones_like(weight)
    want = _reference(teacher, guided, x, y, ones, 0.5, 2.0)
    assert want["guide_loss"] > 0.5
    with_guide = _evaluate(_keras_distiller(teacher, guided), x, y, ones)
    without = _evaluate(_keras_distiller(teacher, plain), x, y, ones)
    assert with_guide["total_loss"] == pytest.approx(without["total_loss"], rel=1e-6)
    ours = Distiller(teacher, guided)
    ours.compile(optimizer="sgd")
    got = _evaluate(ours, x, y, ones)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=2e-5)
    np.testing.assert_allclose(got["guide_loss"], want["guide_loss"], rtol=2e-5)


def test_regression_keras_logits_distillation_skips_the_softmax():
    rng = np.random.default_rng(0)
    teacher = (rng.normal(size=(32, 10)) * 3).astype("float32")
    student = (rng.normal(size=(32, 10)) * 3).astype("float32")
    want = tiny.kd_reference(teacher, student, 3.0)
    theirs = float(
        keras.distillation.LogitsDistillation(temperature=3.0).compute_loss(
            teacher, student
        )
    )
    ours = float(kd_loss(teacher, student, 3.0))
    np.testing.assert_allclose(ours, want, rtol=1e-5)
    assert theirs > 2 * want  # observed: 24.4 against the correct 7.05


def test_regression_keras_rejects_a_bf16_teacher_beside_an_fp32_student():
    x, y, weight = tiny.lm_batch(seed=13)
    teacher_bf16 = tiny.gpt2(hidden=32, dtype="bfloat16", seed=1)
    student = tiny.gpt2(seed=0)
    with pytest.raises(ValueError, match="dtype"):
        keras.distillation.Distiller(
            teacher_bf16, student, keras.distillation.LogitsDistillation()
        )
    ours = Distiller(teacher_bf16, student)
    ours.compile(optimizer="sgd")
    got = _evaluate(ours, x, y, weight)
    z_t = tiny.numpy(keras.ops.cast(teacher_bf16.predict(x, verbose=0), "float32"))
    z_s = tiny.numpy(student.predict(x, verbose=0))
    np.testing.assert_allclose(
        got["kd_loss"], tiny.kd_reference(z_t, z_s, 1.0, weight), rtol=1e-3
    )
    assert ours.train_on_batch(x, y, sample_weight=weight, return_dict=True)["loss"] > 0


def test_regression_keras_cannot_reach_layers_inside_backbones():
    teacher, student = tiny.gpt2(hidden=32, seed=1), tiny.gpt2(seed=0)
    with pytest.raises(ValueError, match="transformer_layer_0"):
        keras.distillation.Distiller(
            teacher,
            student,
            keras.distillation.FeatureDistillation(
                teacher_layer_name="transformer_layer_0",
                student_layer_name="transformer_layer_0",
            ),
        )
    ours = Distiller(
        teacher,
        student,
        keras.distillation.FeatureDistillation(
            teacher_layer_name="transformer_layer_0",
            student_layer_name="transformer_layer_0",
        ),
    )
    ours.compile(optimizer="sgd")
    x, y, weight = tiny.lm_batch(seed=14)
    got = _evaluate(ours, x, y, weight)
    h_s = _block_output(student, "transformer_layer_0", x)
    h_t = _block_output(teacher, "transformer_layer_0", x)
    want = tiny.masked_mean64(((h_s @ np.eye(16, 32) - h_t) ** 2).mean(-1), weight)
    np.testing.assert_allclose(got["hidden_loss"], want, rtol=1e-4)


def test_mixed_precision_student_beside_a_bf16_teacher():
    teacher = tiny.dense_lm(width=8, seed=1, scale=4.0, dtype="bfloat16")
    student = tiny.dense_lm(seed=0, dtype="mixed_bfloat16")
    x, y, weight = tiny.token_batch(seed=15)
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    got = _evaluate(distiller, x, y, weight)
    z_t = tiny.numpy(keras.ops.cast(teacher.predict(x, verbose=0), "float32"))
    z_s = tiny.numpy(keras.ops.cast(student.predict(x, verbose=0), "float32"))
    np.testing.assert_allclose(
        got["kd_loss"], tiny.kd_reference(z_t, z_s, 1.0, weight), rtol=1e-3, atol=1e-5
    )
    teacher_bytes = tiny.weights_bytes(teacher)
    history = distiller.fit(x, y, sample_weight=weight, epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    assert student.get_layer("head").kernel.dtype == "float32"
    assert tiny.weights_bytes(teacher) == teacher_bytes


def test_offline_targets_stored_at_another_temperature_are_named():
    teacher, student = tiny.dense_lm(width=8, seed=1, scale=4.0), tiny.dense_lm(seed=0)
    x, y, weight = tiny.token_batch(seed=10)
    distiller = Distiller(teacher, student, LogitsDistillation(2.0))
    distiller.compile(optimizer="adam")
    data = offline_teacher_dataset(
        teacher, x, y, weight, k=3, batch_size=len(x), temperature=1.0
    )
    with pytest.warns(
        UserWarning,
        match=r"stored at temperature \[1.0\], the "
        r"Distiller distils at 2.0",
    ):
        distiller.fit(data, epochs=1, verbose=0)
    same = offline_teacher_dataset(
        teacher, x, y, weight, k=3, batch_size=len(x), temperature=2.0
    )
    fresh = Distiller(teacher, student, LogitsDistillation(2.0))
    fresh.compile(optimizer="adam")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh.fit(same, epochs=1, verbose=0)
    assert not [w for w in caught if "temperature" in str(w.message)]
