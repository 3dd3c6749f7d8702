import math

import numpy as np
import pytest

from keras_guide.callbacks import gap_closed
from keras_guide.workflows import ablation


def _result(name, loss, init="random", kd=False):
    history = {
        "eval_steps": [0, 10],
        "eval_loss": [7.6, loss],
        "train_steps": [10],
        "train_loss": [loss],
    }
    return ablation.Result(
        name=name,
        init=init,
        kd=kd,
        seed=0,
        loss=loss,
        step0_loss=7.6,
        train_seconds=2.0,
        tokens=1000,
        history=history,
    )


def test_table_lists_every_row_with_perplexity_and_gap(tmp_path):
    results = [
        _result("random a", 5.0),
        _result("random b", 5.2),
        _result("guide", 4.1, init="guide"),
    ]
    base = np.mean([5.0, 5.2])
    for r in results:
        r.gap_closed = gap_closed(r.loss, base, 3.5)
    table = ablation.format_table(results, teacher_loss=3.5)
    assert "guide" in table and f"{math.exp(4.1):.2f}" in table
    assert f"{100 * (base - 4.1) / (base - 3.5):.1f}%" in table
    assert "500" in table  # tokens per second
    for name, write in ablation.result_writers(results, 3.5).items():
        write(tmp_path / name)
    ablation.plot(results, 3.5, tmp_path / "a.png")
    assert (tmp_path / "results.csv").read_text().count("\n") == 4
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_outputs_that_cannot_be_written_are_named_and_the_rest_is_kept(tmp_path):
    import keras

    results = [
        _result("random init (seed 0)", 5.0),
        _result("guide", 4.1, init="guide"),
    ]
    for r in results:
        r.gap_closed = 0.5
    (tmp_path / "ablation.png").mkdir()  # a folder where a file goes
    (tmp_path / "ablation.png" / "keep").write_text("mine")
    best = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(
        OSError,
        match=r"Could not write .*ablation.png .*Written: "
        r"results.json, results.csv, "
        r"best_student.keras",
    ):
        ablation.write_outputs(results, best, 3.5, str(tmp_path))
    assert (tmp_path / "results.json").exists()
    assert (tmp_path / "ablation.png" / "keep").read_text() == "mine"


def test_run_ablation_needs_a_baseline():
    with pytest.raises(ValueError, match="baseline"):
        ablation.run_ablation(
            None,
            None,
            None,
            None,
            ablation.Settings(),
            variants=[ablation.Variant("kd", kd=True)],
        )
