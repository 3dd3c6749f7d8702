import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _example():
    spec = importlib.util.spec_from_file_location(
        "minilm_compression", os.path.join(ROOT, "examples", "minilm_compression.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_minilm_compression_runs_offline_and_guided_students_start_closer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = _example().run(
        steps=4, train_size=128, eval_size=48, verbose=0, variants=("guide", "random")
    )
    assert results["teacher_parameters"] == 22_713_216
    assert "guide_pca" not in results and "selection" not in results
    for variant in ("guide", "random"):
        values = [
            results[variant][k]
            for k in ("cosine_step0", "spearman_step0", "cosine", "spearman")
        ]
        assert np.all(np.isfinite(values)), (variant, values)
    # Initialized from the teacher, a student agrees with it before any training.
    assert (
        results["guide"]["spearman_step0"] > results["random"]["spearman_step0"] + 0.05
    )
    assert results["guide"]["cosine_step0"] > results["random"]["cosine_step0"] + 0.05
