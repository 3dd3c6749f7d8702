import numpy as np
import pytest

from keras_guide.calibration import calibration_batches

NAMES = ["token_ids", "padding_mask"]


def test_one_array_is_cut_into_unpadded_batches():
    ids = np.arange(30).reshape(10, 3)
    batches = calibration_batches(ids, NAMES, 100, batch_size=4)
    assert [b["token_ids"].shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    assert all(
        b["padding_mask"].all() and b["token_ids"].dtype == np.int32 for b in batches
    )
    np.testing.assert_array_equal(
        np.concatenate([b["token_ids"] for b in batches]), ids
    )


def test_dicts_tuples_and_datasets_are_read_as_the_teacher_inputs():
    import tensorflow as tf

    ids = np.arange(12).reshape(2, 6)
    mask = np.ones_like(ids)
    mask[1, 4:] = 0
    as_dict = calibration_batches(
        [{"token_ids": ids, "padding_mask": mask}], NAMES, 100
    )
    as_tuple = calibration_batches(
        [({"token_ids": ids, "padding_mask": mask}, ids, mask)], NAMES, 100
    )
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"token_ids": ids, "padding_mask": mask}, ids)
    ).batch(2)
    as_dataset = calibration_batches(dataset, NAMES, 100)
    for batches in (as_tuple, as_dataset):
        for key in NAMES:
            np.testing.assert_array_equal(batches[0][key], as_dict[0][key])
    bert = calibration_batches(ids, ["token_ids", "segment_ids", "padding_mask"], 100)
    np.testing.assert_array_equal(bert[0]["segment_ids"], np.zeros_like(ids))


@pytest.mark.parametrize(
    "calibration, message",
    [
        (np.zeros((0, 4), "int32"), "holds no tokens"),
        ([], "holds no tokens"),
        (
            np.array([[1, 2, 100]]),
            r"outside the teacher's vocabulary \[0, 100\): e.g. 100",
        ),
        (np.array([[1, -1]]), r"outside the teacher's vocabulary .*e.g. -1"),
        (np.array([[0.5, 1.0]]), "must be integer token ids"),
        (
            [{"ids": np.zeros((1, 2), "int32")}],
            r"needs `token_ids`.*Received keys: \['ids'\]",
        ),
        (
            [{"token_ids": np.zeros((1, 4), "int32"), "padding_mask": np.ones((1, 3))}],
            r"`padding_mask` has shape \(1, 3\), `token_ids` \(1, 4\)",
        ),
    ],
)
def test_bad_calibration_is_refused_with_its_reason(calibration, message):
    with pytest.raises(ValueError, match=message):
        calibration_batches(calibration, NAMES, 100)


def test_padding_may_hold_any_id_and_inputs_the_teacher_lacks_are_refused():
    ids = np.array([[1, 2, 999]])
    calibration_batches(
        [{"token_ids": ids, "padding_mask": np.array([[1, 1, 0]])}], NAMES, 100
    )
    with pytest.raises(ValueError, match="takes `images`"):
        calibration_batches(ids[:, :2], ["token_ids", "images"], 100)


def test_a_large_batch_is_cut_and_bad_masks_and_lengths_are_refused():
    from keras_guide.calibration import calibration_batches

    ids = np.ones((100, 6), "int32")
    batches = calibration_batches(
        [ids], ["token_ids", "padding_mask"], 10, batch_size=8
    )
    assert [len(b["token_ids"]) for b in batches] == [8] * 12 + [4]
    mask = np.ones((2, 6), "int32")
    mask[0, 0] = -1
    with pytest.raises(ValueError, match=r"`padding_mask` must hold 0/1.*\[-1, 1\]"):
        calibration_batches(
            [{"token_ids": ids[:2], "padding_mask": mask}],
            ["token_ids", "padding_mask"],
            10,
        )
    with pytest.raises(
        ValueError, match="sequences of 6 tokens; the teacher takes at most 4"
    ):
        calibration_batches(ids, ["token_ids", "padding_mask"], 10, max_length=4)
