import math

import numpy as np
import pytest

from keras_guide.callbacks import gap_closed
from keras_guide.workflows import ablation


def _result(name, loss, init="random", kd=False):
    history = {"eval_steps": [0, 10], "eval_loss": [7.6, loss], "train_steps": [10],
               "train_loss": [loss]}
    return ablation.Result(name=name, init=init, kd=kd, seed=0, loss=loss,
                           step0_loss=7.6, train_seconds=2.0, tokens=1000,
                           history=history)


def test_table_lists_every_row_with_perplexity_and_gap(tmp_path):
    results = [_result("random a", 5.0), _result("random b", 5.2),
               _result("guide", 4.1, init="guide")]
    base = np.mean([5.0, 5.2])
    for r in results:
        r.gap_closed = gap_closed(r.loss, base, 3.5)
    table = ablation.format_table(results, teacher_loss=3.5)
    assert "guide" in table and f"{math.exp(4.1):.2f}" in table
    assert f"{100 * (base - 4.1) / (base - 3.5):.1f}%" in table
    assert "500" in table  # tokens per second
    ablation.save_results(results, 3.5, tmp_path)
    ablation.plot(results, 3.5, tmp_path / "a.png")
    assert (tmp_path / "results.csv").read_text().count("\n") == 4
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_run_ablation_needs_a_baseline():
    with pytest.raises(ValueError, match="baseline"):
        ablation.run_ablation(None, None, None, None, ablation.Settings(),
                              variants=[ablation.Variant("kd", kd=True)])
