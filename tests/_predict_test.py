"""`predictor` on a KerasHub task with a preprocessor: the task's logits on
token ids (its preprocessor skipped), through one compiled function per
model however often it is asked for (every evaluation of a training run)."""

import keras
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the tiny task model is a GGUF import")

from keras_guide._predict import predictor  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402


def test_a_task_is_predicted_through_one_compiled_logits_model(tmp_path):
    lm = load_gguf(tiny.write_llama(tmp_path / "llama.gguf"))
    assert lm.preprocessor is not None
    ids = np.asarray(tiny.token_ids(lm.backbone.vocabulary_size), "int32")[None]
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    first = predictor(lm)
    np.testing.assert_allclose(
        np.asarray(first(x)), keras.ops.convert_to_numpy(lm(x)), rtol=1e-5, atol=1e-5
    )
    compiled = first.__self__.predict_function
    assert compiled is not None
    second = predictor(lm)
    # The same logits model, whose traced function is reused, not a new one.
    assert second.__self__ is first.__self__
    np.testing.assert_array_equal(np.asarray(second(x)), np.asarray(first(x)))
    assert second.__self__.predict_function is compiled
