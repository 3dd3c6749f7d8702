"""Hostile data given to a `Distiller`: ids outside the vocabulary,
non-finite or negative sample weights, broken offline targets, through
every entry point (`fit`, `evaluate`, `predict`, the `*_on_batch` methods)
and every kind of data (arrays, generators, `tf.data`, `PyDataset`, a torch
`DataLoader`). Each is refused on the host with a message naming the input,
the teacher is never changed, and the Distiller still trains afterwards."""

import keras
import numpy as np
import pytest

from keras_guide.distillation import Distiller
from keras_guide.distillation import offline
from tests.harness import models as tiny

V = tiny.VOCAB


@pytest.fixture()
def setup(gpt2_pair):
    teacher, student = gpt2_pair
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    return distiller, tiny.lm_batch(rows=8)


def _bad(kind, batch):
    x, y, weight = batch
    x, y, weight = dict(x), y.copy(), weight.copy()
    if kind == "label = V":
        y[2, 3] = V
    elif kind == "negative label":
        y[0, 0] = -1
    elif kind == "token id = V":
        x["token_ids"] = x["token_ids"].copy()
        x["token_ids"][1, 1] = V
    elif kind == "negative token id":
        x["token_ids"] = x["token_ids"].copy()
        x["token_ids"][5, 0] = -3
    elif kind == "NaN weight":
        weight[3, 2] = np.nan
    elif kind == "Inf weight":
        weight[0, 0] = np.inf
    elif kind == "negative weight":
        weight[4, 4] = -1.0
    return x, y, weight


KINDS = {
    "label = V": r"`y` must hold labels in \[0, 64\).*1 of its 64 values.*max 64",
    "negative label": r"`y` must hold labels in \[0, 64\).*min -1",
    "token id = V": r"`token_ids` must hold token ids in \[0, 64\)",
    "negative token id": r"`token_ids` must hold token ids in \[0, 64\).*min -3",
    "NaN weight": r"`sample_weight` must be finite and ≥ 0.*1 of its 64",
    "Inf weight": r"`sample_weight` must be finite and ≥ 0",
    "negative weight": r"`sample_weight` must be finite and ≥ 0",
}


def _then_trains(distiller, batch, teacher_before):
    assert tiny.weights_bytes(distiller.teacher) == teacher_before
    x, y, weight = batch
    loss = distiller.fit(x, y, sample_weight=weight, verbose=0).history["loss"][-1]
    assert np.isfinite(loss)
    assert tiny.weights_bytes(distiller.teacher) == teacher_before


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bad_arrays_are_refused_before_any_step_by_every_entry_point(setup, kind):
    distiller, batch = setup
    x, y, weight = _bad(kind, batch)
    teacher, student = (
        tiny.weights_bytes(distiller.teacher),
        tiny.weights_bytes(distiller.student),
    )
    calls = [
        lambda: distiller.fit(x, y, sample_weight=weight, verbose=0),
        lambda: distiller.evaluate(x, y, sample_weight=weight, verbose=0),
        lambda: distiller.train_on_batch(x, y, sample_weight=weight),
        lambda: distiller.test_on_batch(x, y, sample_weight=weight),
    ]
    if "token" in kind:
        calls += [
            lambda: distiller.predict(x, verbose=0),
            lambda: distiller.predict_on_batch(x),
        ]
    for call in calls:
        with pytest.raises(ValueError, match=KINDS[kind]):
            call()
        assert tiny.weights_bytes(distiller.student) == student
    _then_trains(distiller, batch, teacher)


def _stream(batch, bad_at, kind="label = V", count=3):
    for i in range(count):
        yield _bad(kind, batch) if i == bad_at else batch


@pytest.mark.parametrize("bad_at", [0, 2])
def test_a_bad_batch_drawn_from_a_generator_is_refused_and_the_models_stay_usable(
    setup, bad_at
):
    distiller, batch = setup
    teacher = tiny.weights_bytes(distiller.teacher)
    with pytest.raises(ValueError, match=KINDS["label = V"]):
        distiller.fit(_stream(batch, bad_at), verbose=0)
    assert all(np.all(np.isfinite(tiny.numpy(w))) for w in distiller.student.weights)
    _then_trains(distiller, batch, teacher)


def test_a_bad_batch_in_a_pydataset_is_refused(setup):
    distiller, batch = setup

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return _bad("NaN weight", batch) if index == 1 else batch

    teacher = tiny.weights_bytes(distiller.teacher)
    with pytest.raises(ValueError, match=KINDS["NaN weight"]):
        distiller.fit(Batches(), verbose=0)
    _then_trains(distiller, batch, teacher)


def test_a_bad_batch_in_a_tf_dataset_is_refused_as_itself(setup):
    tf = pytest.importorskip("tensorflow")
    distiller, batch = setup
    x, y, weight = _bad("token id = V", batch)
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weight)).batch(4)
    teacher = tiny.weights_bytes(distiller.teacher)
    with pytest.raises(ValueError, match=KINDS["token id = V"]):
        distiller.fit(dataset, verbose=0)
    with pytest.raises(ValueError, match=KINDS["token id = V"]):
        distiller.evaluate(dataset, verbose=0)
    _then_trains(distiller, batch, teacher)


def test_a_bad_batch_in_a_torch_dataloader_is_refused(setup):
    torch = pytest.importorskip("torch")
    distiller, batch = setup
    x, y, weight = _bad("negative label", batch)

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return {k: v[i] for k, v in x.items()}, y[i], weight[i]

    loader = torch.utils.data.DataLoader(Rows(), batch_size=4)
    teacher = tiny.weights_bytes(distiller.teacher)
    with pytest.raises(ValueError, match=KINDS["negative label"]):
        distiller.fit(loader, verbose=0)
    _then_trains(distiller, batch, teacher)


def test_validation_data_is_checked_too(setup):
    distiller, batch = setup
    teacher = tiny.weights_bytes(distiller.teacher)
    with pytest.raises(ValueError, match=KINDS["Inf weight"]):
        distiller.fit(
            *batch[:2],
            sample_weight=batch[2],
            verbose=0,
            validation_data=_bad("Inf weight", batch),
        )
    _then_trains(distiller, batch, teacher)


def test_broken_offline_targets_are_refused(setup):
    # Per-token weights beside a dict of targets come in batches (as
    # `offline_teacher_dataset` gives them), not as arrays.
    distiller, batch = setup
    x, y, weight = batch
    k = 4
    rng = np.random.default_rng(0)
    logits = rng.normal(size=y.shape + (k,)).astype("float32")
    indices = np.argsort(rng.random(y.shape + (V,)), -1)[..., :k].astype("int32")
    good = {
        offline.LABELS: y,
        offline.TOP_K_LOGITS: logits,
        offline.TOP_K_INDICES: indices,
    }
    teacher = tiny.weights_bytes(distiller.teacher)
    cases = {
        offline.TOP_K_INDICES: (indices + V, r"top_k_indices.*class ids in \[0, 64\)"),
        offline.TOP_K_LOGITS: (logits * np.nan, "holds NaN or Inf: recompute"),
        offline.LABELS: (y + V, r"`y\['labels'\]` must hold labels"),
    }
    for key, (value, message) in cases.items():
        bad = dict(good, **{key: value})
        with pytest.raises(ValueError, match=message):
            distiller.fit(iter([(x, good, weight), (x, bad, weight)]), verbose=0)
        with pytest.raises(ValueError, match=message):
            distiller.train_on_batch(x, bad, sample_weight=weight)
    history = distiller.fit(iter([(x, good, weight)]), verbose=0).history
    assert np.isfinite(history["loss"][-1])
    assert tiny.weights_bytes(distiller.teacher) == teacher


def test_an_error_inside_the_first_step_leaves_the_models_readable(setup):
    # A sample weight of the wrong shape fails inside the traced step. On JAX,
    # Keras 3.15's trainer had emptied every variable by then; the Distiller
    # puts them back.
    distiller, batch = setup
    x, y, _ = batch
    teacher, student = (
        tiny.weights_bytes(distiller.teacher),
        tiny.weights_bytes(distiller.student),
    )
    with pytest.raises(Exception):  # noqa: B017 (the backend's own shape error)
        distiller.fit(x, y, sample_weight=np.ones((8, 3), "float32"), verbose=0)
    assert tiny.weights_bytes(distiller.teacher) == teacher
    assert tiny.weights_bytes(distiller.student) == student
    _then_trains(distiller, batch, teacher)


def _bert_classifier(hidden, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=V,
        num_layers=1,
        num_heads=2,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        max_sequence_length=16,
        num_segments=2,
    )
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=3, preprocessor=None
    )


def test_a_classifier_distils_with_token_ids_beyond_its_classes():
    teacher, student = _bert_classifier(16, 0), _bert_classifier(8, 1)
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, V, (8, tiny.SEQ)).astype("int32"),
        "segment_ids": np.zeros((8, tiny.SEQ), "int32"),
        "padding_mask": np.ones((8, tiny.SEQ), "int32"),
    }
    y = rng.integers(0, 3, (8,)).astype("int32")
    before = tiny.weights_bytes(teacher)
    distiller.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert tiny.weights_bytes(teacher) == before
    with pytest.raises(ValueError, match=r"`y` must hold labels in \[0, 3\)"):
        distiller.fit(x, np.full(8, 3, "int32"), verbose=0)
    with pytest.raises(
        ValueError,
        match=r"`segment_ids` must hold segment ids in "
        r"\[0, 2\)",
    ):
        distiller.fit(
            {**x, "segment_ids": np.full((8, tiny.SEQ), 2, "int32")}, y, verbose=0
        )
    with pytest.raises(ValueError, match=r"`segment_ids` must hold .*min -1"):
        distiller.train_on_batch(
            {**x, "segment_ids": -np.ones((8, tiny.SEQ), "int32")}, y
        )
    assert tiny.weights_bytes(teacher) == before


@pytest.mark.parametrize(
    "weight, message",
    [
        (1e-45, "min positive 1.4e-45"),
        (1e38, "max 1e\\+38"),
    ],
)
def test_weights_float32_sums_cannot_hold_are_refused(setup, weight, message):
    distiller, (x, y, w) = setup
    w = w.copy()
    w[0, 0] = weight
    with pytest.raises(ValueError, match=r"sample_weight` must lie in .*" + message):
        distiller.fit(x, y, sample_weight=w, verbose=0)


def test_a_padding_mask_that_is_not_zero_or_one_is_refused(setup):
    distiller, (x, y, w) = setup
    mask = np.asarray(x["padding_mask"]).copy()
    mask[0, 0] = -1
    with pytest.raises(ValueError, match="`padding_mask` must hold 0/1"):
        distiller.fit({**x, "padding_mask": mask}, y, sample_weight=w, verbose=0)


def test_a_loss_that_becomes_nan_ends_fit_with_an_error_not_silently(setup):
    distiller, (x, y, w) = setup
    teacher = distiller.teacher
    # A teacher whose logits are infinite: every KD loss is NaN.
    kernel = teacher.backbone.token_embedding.embeddings
    kernel.assign(np.full(kernel.shape, np.inf, "float32"))
    with pytest.raises(
        FloatingPointError,
        match=r"loss became nan at batch 0.*"
        r"teacher float32",
    ):
        distiller.fit(x, y, sample_weight=w, epochs=3, verbose=0)


def test_an_unbuilt_teacher_is_refused_before_it_could_be_built_at_random():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(12)

        def call(self, x):
            return self.dense(keras.ops.one_hot(x, 12))

    student = tiny.dense_lm(seed=0)
    with pytest.raises(
        ValueError,
        match=r"The teacher `subclassed` is not built: "
        r"it has no weights yet.*load its trained weights first",
    ):
        Distiller(Subclassed(), student)
