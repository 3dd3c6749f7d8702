"""guide()'s data-aware options: what they need, what they refuse, what they report."""

import numpy as np
import pytest

from keras_guide.guide import build_student
from keras_guide.guide import guide
from tests.harness import families as harness

SIZES = dict(
    hidden_dim=16, num_heads=4, num_key_value_heads=2, intermediate_dim=12, num_layers=1
)


@pytest.fixture(scope="module")
def teacher():
    return harness.make_teacher(harness.FAMILIES["llama"], final_gain_one=False)


def _ids(rows, length=16, seed=0):
    return np.random.default_rng(seed).integers(0, 64, (rows, length)).astype("int32")


@pytest.mark.parametrize(
    "options",
    [
        dict(projection="activations"),
        dict(projection="channels"),
        dict(select="importance"),
        dict(layer_map="importance"),
    ],
)
def test_data_aware_choices_need_calibration(teacher, options):
    student = build_student(teacher, **SIZES)
    with pytest.raises(
        ValueError,
        match=r"measure the teacher on calibration text; pass `calibration=`",
    ):
        guide(teacher, student, **options)


def test_calibration_alone_applies_the_data_aware_recipe(teacher):
    alone = build_student(teacher, **SIZES)
    report = guide(teacher, alone, calibration=_ids(8))
    assert report.recipe == "data-aware"
    assert {k: report.options[k] for k in ("projection", "select", "layer_map")} == {
        "projection": "channels",
        "select": "importance",
        "layer_map": "importance",
    }
    assert "recipe: data-aware (projection=channels" in str(report)
    explicit = build_student(teacher, **SIZES)
    guide(
        teacher,
        explicit,
        projection="channels",
        select="importance",
        layer_map="importance",
        calibration=_ids(8),
    )
    for path, value in harness.weights(explicit).items():
        np.testing.assert_array_equal(harness.weights(alone)[path], value)
    # An option set explicitly is kept.
    kept = guide(
        teacher, build_student(teacher, **SIZES), select="uniform", calibration=_ids(8)
    )
    assert kept.options["select"] == "uniform"
    assert guide(teacher, build_student(teacher, **SIZES)).recipe == "data-free"


def test_statistics_of_one_pass_guide_several_students(teacher):
    import dataclasses

    from keras_guide import calibration

    batches = calibration.calibration_batches(
        _ids(8), list(teacher.input.keys()), teacher.vocabulary_size
    )
    stats = calibration.collect_statistics(teacher, batches)
    from_ids, from_stats = (build_student(teacher, **SIZES) for _ in range(2))
    guide(teacher, from_ids, calibration=_ids(8))
    guide(teacher, from_stats, calibration=stats)
    for path, value in harness.weights(from_ids).items():
        np.testing.assert_array_equal(harness.weights(from_stats)[path], value)
    # Statistics of another teacher (here: of fewer blocks) are refused.
    other = dataclasses.replace(stats, block_change=stats.block_change[:1])
    with pytest.raises(ValueError, match="statistics are of a model with"):
        guide(teacher, build_student(teacher, **SIZES), calibration=other)


def test_unused_calibration_is_refused(teacher):
    with pytest.raises(ValueError, match="no choice uses it"):
        guide(
            teacher,
            build_student(teacher, **SIZES),
            projection="pca",
            select="uniform",
            layer_map="uniform",
            calibration=_ids(4),
        )


def test_too_few_tokens_for_the_activation_basis(teacher):
    student = build_student(teacher, **SIZES)
    before = harness.weights(student)
    with pytest.raises(ValueError, match=r"has 24 tokens; .* needs at least 32 tokens"):
        guide(teacher, student, projection="activations", calibration=_ids(1, 24))
    for path, value in harness.weights(student).items():
        np.testing.assert_array_equal(value, before[path])
    # Unit importance needs no full-rank second moment.
    guide(
        teacher, student, projection="pca", select="importance", calibration=_ids(1, 4)
    )


def test_out_of_vocabulary_calibration_leaves_teacher_and_student(teacher):
    student = build_student(teacher, **SIZES)
    t_before, s_before = harness.weights(teacher), harness.weights(student)
    with pytest.raises(ValueError, match=r"outside the teacher's vocabulary \[0, 64\)"):
        guide(teacher, student, select="importance", calibration=_ids(2) + 60)
    for model, before in ((teacher, t_before), (student, s_before)):
        for path, value in harness.weights(model).items():
            np.testing.assert_array_equal(value, before[path])


def test_report_says_what_was_measured_and_chosen(teacher):
    student = build_student(teacher, **SIZES)
    report = guide(
        teacher,
        student,
        projection="channels",
        select="importance",
        layer_map="importance",
        calibration=_ids(4),
    )
    assert report.calibration["tokens"] == 64 and report.calibration["seconds"] > 0
    assert len(report.calibration["block_change"]) == 2
    assert report.options["select"] == "importance"
    assert report.projection.kind == "channels"
    kept = report.selections[0]
    assert (
        len(kept["heads"]) == 4
        and len(kept["kv_heads"]) == 2
        and len(kept["neurons"]) == 12
    )
    assert report.as_dict()["selections"] == report.selections
    assert "calibration: 64 tokens" in str(report)
    assert "kept random" not in report.counts()


def test_full_width_with_channel_basis_is_exact_for_a_tied_head():
    """Channels are a selection: at full width the identity, tied gain and all."""
    from tests.harness.families import tied_llama as _tied_llama

    family, tied = _tied_llama()
    student = build_student(tied)
    guide(
        tied,
        student,
        projection="channels",
        select="importance",
        norm="fold",
        calibration=_ids(4),
    )
    x = harness.inputs(family)
    error = np.max(np.abs(harness.logits(student, x) - harness.logits(tied, x)))
    assert error / np.max(np.abs(harness.logits(tied, x))) < 1e-5
