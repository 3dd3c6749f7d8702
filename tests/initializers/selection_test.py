import numpy as np
import pytest

from keras_guide.initializers import selection


def test_every_pair_up_to_64_is_sorted_unique_in_range():
    for n_t in range(1, 65):
        for n_s in range(1, n_t + 1):
            idx = selection.uniform_indices(n_t, n_s)
            assert idx.shape == (n_s,)
            assert np.all(np.diff(idx) > 0), (n_t, n_s)
            assert idx[0] >= 0 and idx[-1] < n_t


def test_rule_matches_xu_et_al():
    np.testing.assert_array_equal(selection.uniform_indices(12, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(
        selection.uniform_indices(10, 4), np.round(np.linspace(0, 9, 4))
    )
    np.testing.assert_array_equal(selection.uniform_indices(7, 7), np.arange(7))


def test_student_larger_than_teacher_is_refused():
    with pytest.raises(ValueError, match=r"student's heads \(5\).*teacher's \(4\)"):
        selection.uniform_indices(4, 5, "heads")


@pytest.mark.parametrize(
    "h_t,g_t,h_s,g_s",
    [
        (8, 2, 4, 1),
        (8, 2, 4, 2),
        (8, 8, 4, 4),
        (12, 4, 6, 2),
        (16, 4, 6, 3),
        (8, 2, 2, 2),
    ],
)
def test_gqa_groups_stay_consistent(h_t, g_t, h_s, g_s):
    q, kv = selection.gqa_head_indices(h_t, g_t, h_s, g_s)
    assert q.shape == (h_s,) and kv.shape == (g_s,)
    assert np.all(np.diff(q) > 0) and np.all(np.diff(kv) > 0)
    # Student query head i reads student kv head i // (h_s/g_s); it must be the
    # kv head its teacher query head read.
    teacher_kv_of_query = q // (h_t // g_t)
    student_kv_of_query = kv[np.arange(h_s) // (h_s // g_s)]
    np.testing.assert_array_equal(teacher_kv_of_query, student_kv_of_query)


def test_gqa_refuses_growing_groups():
    with pytest.raises(ValueError, match="per key/value head"):
        selection.gqa_head_indices(8, 4, 8, 2)
    with pytest.raises(ValueError, match="multiple of"):
        selection.gqa_head_indices(8, 3, 4, 1)
