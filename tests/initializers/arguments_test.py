"""The public functions below `guide()` check their arguments as `guide()`
does: sizes, scales, gains, indices and tables that would give a wrong
result reported as fine are refused by name (or, for a table whose spectrum
is shorter than the kept directions, warned about)."""

import warnings

import keras
import numpy as np
import pytest

from keras_guide import GuidedInitializer
from keras_guide.initializers import diagonal_gain
from keras_guide.initializers import fold_gain
from keras_guide.initializers import fold_shift
from keras_guide.initializers import gqa_head_indices
from keras_guide.initializers import guided_value
from keras_guide.initializers import norm_scale
from keras_guide.initializers import pca_projection
from keras_guide.initializers import project_axis
from keras_guide.initializers import select_axis
from keras_guide.initializers import selection_projection
from keras_guide.initializers import uniform_indices
from keras_guide.initializers.projection import gram_matrix
from keras_guide.initializers.projection import project_table

TABLE = np.random.default_rng(0).normal(size=(40, 8))


@pytest.mark.parametrize("dim", [0, -2, 2.0, True, "4", None])
def test_pca_dim_must_be_a_positive_integer(dim):
    with pytest.raises(ValueError, match=r"`dim` must be an integer in \[1, 8\]"):
        pca_projection(TABLE, dim)


def test_a_table_with_fewer_rows_than_directions_warns():
    with pytest.warns(
        UserWarning,
        match=r"`table` has only 3 directions with "
        r"energy.*the other 2 are arbitrary",
    ):
        pca_projection(TABLE[:3], 5)


def test_an_all_zero_table_is_refused_not_explained_in_full():
    with pytest.raises(ValueError, match="`emb` has no energy to keep"):
        pca_projection(np.zeros((40, 8)), 4, name="emb")
    # Constant rows have energy, but none left once centred.
    with pytest.raises(ValueError, match="no energy"):
        pca_projection(np.ones((40, 8)), 4, center=True)


def test_a_table_of_low_rank_warns_how_many_directions_are_arbitrary():
    low = TABLE[:, :2] @ np.random.default_rng(1).normal(size=(2, 8))
    with pytest.warns(
        UserWarning,
        match=r"only 2 directions with energy.*fewer "
        r"than the 4 kept: the other 2 are arbitrary",
    ):
        p = pca_projection(low, 4)
    assert p.explained_variance == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pca_projection(low, 2)  # as many as it has: no warning


@pytest.mark.parametrize("dtype", [np.complex128, object, "U3"])
def test_complex_string_and_object_tables_are_refused(dtype):
    table = TABLE.astype(dtype)
    with pytest.raises(ValueError, match=r"must hold real numbers; received dtype"):
        pca_projection(table, 4)
    with pytest.raises(ValueError, match=r"must hold real numbers"):
        gram_matrix(table)


@pytest.mark.parametrize("chunk_rows", [0, -1, 2.5, True])
def test_chunk_rows_must_be_a_positive_integer(chunk_rows):
    with pytest.raises(ValueError, match=r"`chunk_rows` must be an integer ≥ 1"):
        pca_projection(TABLE, 4, chunk_rows=chunk_rows)
    with pytest.raises(ValueError, match=r"`chunk_rows` must be an integer ≥ 1"):
        gram_matrix(TABLE, chunk_rows=chunk_rows)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), "2", None])
def test_project_table_scale_must_be_finite(scale):
    m = pca_projection(TABLE, 4)
    with pytest.raises(ValueError, match=r"`scale` for `table` must be"):
        project_table(TABLE, m, scale=scale)


@pytest.mark.parametrize("num_rows", [-1, 2.5, True])
def test_project_table_rows_must_be_a_count(num_rows):
    m = pca_projection(TABLE, 4)
    with pytest.raises(ValueError, match=r"`num_rows` for `table` must be an integer"):
        project_table(TABLE, m, num_rows=num_rows)


def test_a_complex_projection_is_refused():
    m = pca_projection(TABLE, 4).matrix.astype(np.complex128)
    with pytest.raises(ValueError, match=r"projection for `table`.*real numbers"):
        project_table(TABLE, m)


@pytest.mark.parametrize(
    "teacher_size, student_size", [(8, 0), (8, 2.0), (8.0, 2), (True, 1), (-4, 2)]
)
def test_selection_sizes_are_positive_integers(teacher_size, student_size):
    with pytest.raises(ValueError, match=r"must be a positive integer|integer ≥ 1"):
        uniform_indices(teacher_size, student_size)
    with pytest.raises(ValueError, match=r"must be an integer ≥ 1"):
        selection_projection(teacher_size, student_size)


def test_selection_indices_are_whole_numbers():
    with pytest.raises(ValueError, match=r"1-D list of integer indices.*\[0.5, 2.0\]"):
        selection_projection(8, 2, indices=[0.5, 2.0])
    np.testing.assert_array_equal(
        selection_projection(8, 2, indices=np.array([1.0, 5.0])).matrix.argmax(0),
        [1, 5],
    )
    with pytest.raises(ValueError, match=r"1-D list of integer indices"):
        select_axis(TABLE, [0.5, 2.0], axis=1)
    with pytest.raises(ValueError, match=r"1-D list of integer indices"):
        select_axis(TABLE, [True, False], axis=1)


@pytest.mark.parametrize(
    "args", [(4, 2.0, 2, 1), (4, 2, 0, 1), (4, 2, 2, None), (True, 1, 1, 1)]
)
def test_gqa_head_counts_are_positive_integers(args):
    with pytest.raises(ValueError, match=r"must be an integer ≥ 1"):
        gqa_head_indices(*args)


@pytest.mark.parametrize("axis", [1.0, True, "0", 5])
def test_fold_axes_are_integers_in_range(axis):
    with pytest.raises(ValueError, match=r"out of range for `weight`"):
        fold_gain(TABLE, np.ones(8), axis)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_gains_shifts_and_biases_must_be_finite(bad):
    gain = np.ones(8)
    gain[3] = bad
    with pytest.raises(ValueError, match=r"norm gain for `k`.*1 NaN or Inf"):
        fold_gain(TABLE, gain, 1, name="k")
    with pytest.raises(ValueError, match=r"norm shift for `k`.*1 NaN or Inf"):
        fold_shift(TABLE, gain, 1, name="k")
    bias = np.zeros(40)
    bias[0] = bad
    with pytest.raises(ValueError, match=r"bias of `k`.*1 NaN or Inf"):
        fold_shift(TABLE, np.ones(8), 1, bias=bias, name="k")
    with pytest.raises(ValueError, match=r"`gain`.*1 NaN or Inf"):
        diagonal_gain(gain, np.eye(8)[:, :4])


def test_diagonal_gain_checks_the_gain_against_the_projection():
    with pytest.raises(
        ValueError,
        match=r"gain of shape \(6,\) does not match the "
        r"projection's teacher width 8",
    ):
        diagonal_gain(np.ones(6), np.eye(8)[:, :4])


def test_project_axis_refuses_a_non_finite_projection():
    m = np.eye(8)[:, :4].copy()
    m[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"projection for `weight`.*NaN or Inf"):
        project_axis(TABLE, m, 1)


@pytest.mark.parametrize("dims", [(0, 4), (8, 4.0), (True, 2), (-8, 4)])
def test_norm_scale_takes_positive_integer_widths(dims):
    with pytest.raises(ValueError, match=r"must be an integer ≥ 1"):
        norm_scale(*dims)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), None, "1"])
def test_guided_value_and_initializer_scales_must_be_finite(scale):
    with pytest.raises(ValueError, match=r"`scale` for `w` must be"):
        guided_value(TABLE, (40, 4), select={1: "uniform"}, scale=scale, name="w")
    with pytest.raises(ValueError, match=r"`scale` for `w` must be"):
        GuidedInitializer(TABLE, select={1: "uniform"}, scale=scale, name="w")


def test_guided_value_refuses_a_bad_shape_and_repeated_indices():
    with pytest.raises(
        ValueError,
        match=r"student shape for `w` must be a tuple of "
        r"non-negative integers",
    ):
        guided_value(TABLE, (40, 4.5), select={1: "uniform"}, name="w")
    with pytest.raises(ValueError, match=r"give 2 distinct indices in \[0, 8\)"):
        guided_value(TABLE, (40, 2), select={1: [3, 3]}, name="w")


def test_the_initializer_checks_its_rules_when_made_not_when_called():
    m = pca_projection(TABLE, 4)
    with pytest.raises(ValueError, match=r"`project` for `w` must be a dict"):
        GuidedInitializer(TABLE, project=m, name="w")
    with pytest.raises(
        ValueError,
        match=r"projection for axis 0 of `w` has shape "
        r"\(8, 4\); the teacher weight \(shape \(40, 8\)\) has 40",
    ):
        GuidedInitializer(TABLE, project={0: m}, name="w")
    with pytest.raises(ValueError, match=r"Unknown selection rule for axis 1"):
        GuidedInitializer(TABLE, select={1: "random"}, name="w")
    with pytest.raises(ValueError, match=r"integer indices"):
        GuidedInitializer(TABLE, select={1: [0.5, 1.5]}, name="w")
    with pytest.raises(
        ValueError,
        match=r"norm gain for axis 1 of `w` has shape "
        r"\(3,\)",
    ):
        GuidedInitializer(TABLE, gains={1: np.ones(3)}, name="w")
    with pytest.raises(ValueError, match=r"Teacher weight `w` must hold real numbers"):
        GuidedInitializer(TABLE.astype(np.complex64), name="w")


def test_a_value_beyond_the_weights_dtype_is_refused_not_stored_as_inf():
    big = np.full((4, 4), 1e39)
    init = GuidedInitializer(big, name="w")
    with pytest.raises(ValueError, match=r"guided `w` reaches 1e\+39, beyond float32"):
        init((4, 4), dtype="float32")
    init = GuidedInitializer(np.full((4, 4), 7e4), name="w")
    with pytest.raises(ValueError, match=r"beyond float16.*float32 or bfloat16"):
        init((4, 4), dtype="float16")
    value = keras.ops.convert_to_numpy(init((4, 4), dtype="float32"))
    np.testing.assert_array_equal(value, np.full((4, 4), 7e4, np.float32))
