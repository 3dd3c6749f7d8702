"""The Python-API examples run end to end, tiny, on the current backend."""

import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _example(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "examples", name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpt2_plays_guided_student_starts_near_the_teacher_and_regularizer_counts():
    results = _example("gpt2_plays").run(
        steps=3, batch_size=2, regularize=1e-2, verbose=0, eval_windows=8
    )
    for name in ("guide", "random"):
        values = [results[name][k] for k in ("step0", "loss", "kd_loss", "guide_loss")]
        assert np.all(np.isfinite(values)), (name, values)
    # Shipped teacher, fixed windows: the guided student starts > 2 nats ahead.
    assert results["guide"]["step0"] < results["random"]["step0"] - 2.0
    assert results["guide"]["step0"] > results["teacher"]
    # Only the guided student carries GuideRegularizers (zero until the first
    # update moves it: the learning rate warms up from 0 at step 0).
    assert results["guide"]["guide_loss"] > 0.0
    assert results["random"]["guide_loss"] == 0.0


@pytest.mark.slow
def test_llama_gqa_keeps_whole_kv_groups_and_trains(tmp_path):
    results = _example("llama_gqa").run(
        out=str(tmp_path),
        teacher_steps=2,
        steps=2,
        batch_size=2,
        verbose=False,
        eval_windows=8,
    )
    assert os.path.exists(tmp_path / "llama_teacher_2.weights.h5")
    for name in ("guide", "random"):
        assert np.isfinite([results[name]["step0"], results[name]["loss"]]).all()
    shapes = {
        e["student"]: (e["teacher_shape"], e["student_shape"])
        for e in results["report"].as_dict()["weights"]
    }
    # 8 query heads sharing 2 key/value heads -> 4 sharing 1; head width 32 kept (RoPE).
    assert shapes["transformer_layer_0/self_attention/key/kernel"] == (
        (256, 2, 32),
        (128, 1, 32),
    )
    assert shapes["transformer_layer_0/self_attention/query/kernel"] == (
        (256, 8, 32),
        (128, 4, 32),
    )
    assert list(results["report"].layer_map) == [0, 2]
