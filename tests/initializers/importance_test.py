import numpy as np
import pytest

from keras_guide.initializers import importance


def test_top_indices_are_sorted_and_ties_go_to_the_lower_index():
    assert importance.top_indices([0.1, 3.0, 2.0, 3.0], 2).tolist() == [1, 3]
    assert importance.top_indices([1.0, 1.0, 1.0], 2).tolist() == [0, 1]
    assert importance.top_indices([5.0, 1.0], 2).tolist() == [0, 1]


def test_gqa_keeps_whole_groups_and_their_best_heads():
    # 8 query heads in 4 groups of 2; group scores 3, 11, 7, 15.
    scores = np.array([1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0])
    query, kv = importance.gqa_importance_indices(scores, 4, 2, 2)
    assert kv.tolist() == [1, 3]
    assert query.tolist() == [3, 7]  # The better head of each kept group.
    query, kv = importance.gqa_importance_indices(scores, 4, 4, 2)
    assert query.tolist() == [2, 3, 6, 7]
    group = 8 // 4
    assert all(q // group in kv.tolist() for q in query)


def test_gqa_refuses_groups_that_grow():
    with pytest.raises(ValueError, match="query heads per key/value head"):
        importance.gqa_importance_indices(np.ones(8), 4, 6, 2)


def test_important_blocks_keep_order():
    assert importance.important_blocks([0.1, 0.5, 0.2, 0.9], 2) == [1, 3]


@pytest.mark.parametrize(
    "scores, count, message",
    [
        ([1.0, np.nan], 1, "finite 1-D"),
        ([[1.0]], 1, "finite 1-D"),
        ([1.0, 2.0], 3, "keep between 1 and 2"),
        ([1.0], 0, "keep between 1 and 1"),
    ],
)
def test_bad_scores_are_refused(scores, count, message):
    with pytest.raises(ValueError, match=message):
        importance.top_indices(scores, count)
