"""`keras-guide distill --data-parallel / --model-parallel` on the current backend."""

import json

import keras
import pytest

from keras_guide import cli
from keras_guide.demo import data
from keras_guide.demo import models

TINY = {
    "vocabulary_size": 2048,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "dropout": 0.0,
    "max_sequence_length": 16,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    models.build_causal_lm(TINY, seed=1).save(root / "teacher.keras")
    student = models.build_causal_lm(dict(TINY, hidden_dim=8), seed=2)
    student.save(root / "student.keras")
    (root / "tempest.txt").write_text(data.load_texts(["tempest"])[0][:3000])
    return root


def _command(root, out, *flags):
    return [
        "distill",
        "--teacher",
        str(root / "teacher.keras"),
        "--student",
        str(root / "student.keras"),
        "--text",
        str(root / "tempest.txt"),
        "--tokenizer",
        "demo",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--sequence-length",
        "16",
        "--steps",
        "2",
        *flags,
    ]


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the PyTorch refusal")
def test_distill_parallel_on_torch_says_it_is_unsupported(workspace, capsys):
    assert cli.main(_command(workspace, workspace / "out", "--data-parallel")) == 2
    assert "PyTorch" in capsys.readouterr().err


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution runs on JAX"
)
@pytest.mark.parametrize("flags", [("--data-parallel",), ("--model-parallel", "1")])
def test_distill_parallel_trains_on_jax(workspace, flags):
    out = workspace / ("dp" if flags[0] == "--data-parallel" else "mp")
    try:
        assert cli.main(_command(workspace, out, *flags)) == 0
    finally:
        keras.distribution.set_distribution(None)
    record = json.loads((out / "distill.json").read_text())
    assert record["held_out_loss"] > 0 and (out / "student.keras").exists()
