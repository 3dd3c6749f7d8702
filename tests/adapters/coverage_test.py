"""Every student weight is set from the teacher, or guide() refuses untouched."""

import inspect

import keras
import numpy as np
import pytest

from keras_guide.adapters import ADAPTERS
from keras_guide.adapters import llama as llama_adapter
from keras_guide.guide import build_student
from keras_guide.guide import guide
from tests.harness import families as harness


def _relative_error(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_build_student_keeps_a_tied_llama_head_tied(monkeypatch):
    # KerasHub 0.32's LlamaBackbone leaves `tie_word_embeddings` out of its config.
    # keras_guide's fix patches the class once per process, so an earlier test may
    # have applied it: put back a config without the key to test from the start.
    import keras_hub

    cls = keras_hub.models.LlamaBackbone
    patched = cls.get_config

    def without_tie(self):
        config = patched(self)
        config.pop("tie_word_embeddings", None)
        return config

    monkeypatch.setattr(cls, "get_config", without_tie)
    _, teacher = harness.tied_llama()
    assert "tie_word_embeddings" not in teacher.get_config()
    student = build_student(teacher, hidden_dim=16, num_heads=4, num_key_value_heads=2)
    assert student.token_embedding.tie_weights
    assert not build_student(teacher, tie_embeddings=False).token_embedding.tie_weights


def test_tied_teacher_full_width_selection_is_exact():
    family, teacher = harness.tied_llama()
    student = build_student(teacher)
    report = guide(teacher, student, projection="select", norm="fold")
    x = harness.inputs(family)
    assert (
        _relative_error(harness.logits(student, x), harness.logits(teacher, x)) < 1e-5
    )
    assert "kept random" not in report.counts()


def test_untied_student_of_a_tied_teacher_folds_the_final_gain_into_its_head():
    family, teacher = harness.tied_llama()
    x = harness.inputs(family)
    untied = build_student(teacher, tie_embeddings=False)
    report = guide(teacher, untied, projection="pca", norm="fold")
    assert _relative_error(harness.logits(untied, x), harness.logits(teacher, x)) < 1e-5
    rows = {row.student: row for row in report.entries}
    head = rows["token_embedding/reverse_embeddings"]
    assert (head.teacher, head.how) == ("token_embedding/embeddings", "folded")
    assert head.teacher_shape == (64, 32) and head.student_shape == (32, 64)
    # A tied student can only keep the diagonal of the rotated final gain.
    tied = build_student(teacher)
    guide(teacher, tied, projection="pca", norm="fold")
    assert _relative_error(harness.logits(tied, x), harness.logits(teacher, x)) > 1e-2


def test_untied_teacher_and_tied_student_are_refused_untouched():
    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher, tie_embeddings=True)
    before = harness.weights(student)
    with pytest.raises(
        ValueError,
        match=r"own output head `token_embedding/reverse_embeddings`.*ties its head",
    ):
        guide(teacher, student)
    for path, value in harness.weights(student).items():
        np.testing.assert_array_equal(value, before[path])


def test_tie_embeddings_refused_for_families_that_always_tie():
    teacher = harness.make_teacher(harness.FAMILIES["gpt2"])
    with pytest.raises(ValueError, match="always ties.*tie_embeddings=False"):
        build_student(teacher, tie_embeddings=False)


def test_an_option_the_adapter_does_not_know_is_refused(monkeypatch):
    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher)
    config = teacher.get_config()
    monkeypatch.setattr(teacher, "get_config", lambda: dict(config, use_new_flag=True))
    with pytest.raises(
        ValueError,
        match=r"teacher `llama_backbone\w*`: it does not know the options "
        r"\['use_new_flag'\]",
    ):
        guide(teacher, student)


def test_options_teacher_and_student_must_share():
    import keras_hub

    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family)
    config = dict(teacher.get_config(), rope_max_wavelength=500, name="s")
    student = keras_hub.models.LlamaBackbone.from_config(config)
    with pytest.raises(
        ValueError, match=r"rope_max_wavelength: teacher 10000, student 500"
    ):
        guide(teacher, student)


def test_a_weight_the_adapter_does_not_describe_is_refused(monkeypatch):
    family = harness.FAMILIES["llama"]
    teacher = harness.make_teacher(family)
    student = build_student(teacher)
    before = harness.weights(student)
    block = llama_adapter.LlamaAdapter.block
    monkeypatch.setattr(
        llama_adapter.LlamaAdapter, "block", lambda self, b, i: block(self, b, i)[:-1]
    )
    with pytest.raises(
        ValueError,
        match=r"sets no value for 2 weights.*"
        r"transformer_layer_0/feedforward_layernorm/scale",
    ):
        guide(teacher, student)
    for path, value in harness.weights(student).items():
        np.testing.assert_array_equal(value, before[path])


def _walkable_options(backbone_class):
    """Constructor arguments with a boolean default: the flags a family can flip."""
    signature = inspect.signature(backbone_class.__init__)
    return [
        name
        for name, p in signature.parameters.items()
        if isinstance(p.default, bool) and name not in ("trainable",)
    ]


def _option_cases():
    cases = []
    for adapter in ADAPTERS:
        family = next(
            (
                f
                for f in harness.FAMILIES.values()
                if f.backbone == adapter.backbone_class
            ),
            None,
        )
        if family is None:
            continue
        import keras_hub

        cls = getattr(keras_hub.models, adapter.backbone_class)
        cases += [(family.name, option) for option in _walkable_options(cls)]
    return cases


@pytest.mark.parametrize("name,option", _option_cases())
def test_every_flag_of_every_backbone_is_placed_exactly_or_refused(name, option):
    """Flips each boolean constructor option of each supported backbone.

    A full-width student guided by selection with folded norms must then
    reproduce its teacher (every weight placed), or guide() must refuse with
    a message naming the option; it may never run and leave a weight wrong.
    """
    import keras_hub

    family = harness.FAMILIES[name]
    cls = getattr(keras_hub.models, family.backbone)
    default = inspect.signature(cls.__init__).parameters[option].default
    # Flipped from the harness config's value (Gemma 3's sets post norms on).
    flipped = not family.config.get(option, default)
    keras.utils.set_random_seed(0)
    try:
        teacher = cls(**dict(family.config, **{option: flipped}))
    except (ValueError, TypeError) as error:
        pytest.skip(f"{family.backbone}({option}={flipped}) cannot be built: {error}")
    rng = np.random.default_rng(0)
    for w in teacher.weights:
        w.assign(
            (
                np.asarray(keras.ops.convert_to_numpy(w))
                + 0.3 * rng.normal(size=w.shape)
            ).astype(w.dtype)
        )
    student = build_student(teacher)
    before = harness.weights(student)
    try:
        report = guide(teacher, student, projection="select", norm="fold")
    except ValueError as error:
        assert option in str(error), f"refusal does not name {option}: {error}"
        for path, value in harness.weights(student).items():
            np.testing.assert_array_equal(value, before[path])
        return
    assert "kept random" not in report.counts()
    x = harness.inputs(family)
    if hasattr(teacher, "token_embedding"):
        assert (
            _relative_error(harness.logits(student, x), harness.logits(teacher, x))
            < 1e-4
        )
    else:
        out_s, out_t = student(x), teacher(x)
        for key in out_t:
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(out_s[key]),
                keras.ops.convert_to_numpy(out_t[key]),
                rtol=1e-4,
                atol=1e-5,
            )
