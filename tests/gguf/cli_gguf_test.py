"""The command line takes a `.gguf` teacher wherever it takes a teacher."""

import keras
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the GGUF importer needs `pip install gguf`")

from keras_guide import cli  # noqa: E402

SIZES = [
    "--hidden-dim",
    "16",
    "--num-heads",
    "2",
    "--num-key-value-heads",
    "1",
    "--intermediate-dim",
    "32",
    "--num-layers",
    "1",
]


def test_init_from_a_gguf_teacher_with_data_aware_options(tmp_path, capsys, llama_gguf):
    teacher = llama_gguf
    text = tmp_path / "calibration.txt"
    text.write_text(" the in the a on er " * 200)
    out = tmp_path / "student.keras"
    cli.main(
        [
            "init",
            str(teacher),
            "--out",
            str(out),
            *SIZES,
            "--projection",
            "activations",
            "--select",
            "importance",
            "--layer-map",
            "importance",
            "--calibration",
            str(text),
            "--calibration-tokens",
            "512",
        ]
    )
    printed = capsys.readouterr().out
    assert "projection=activations" in printed and "kept random" not in printed
    student = keras.saving.load_model(out)
    assert type(student).__name__ == "Llama3CausalLM"
    x = {
        "token_ids": np.ones((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(student(x))))


def test_distill_from_a_gguf_teacher(tmp_path, llama_gguf):
    teacher = llama_gguf
    student = tmp_path / "student.keras"
    assert cli.main(["init", str(teacher), "--out", str(student), *SIZES]) == 2
    cli.main(["init", str(teacher), "--out", str(student), *SIZES, "--data-free"])
    text = tmp_path / "text.txt"
    text.write_text(" the in the a on er\n" * 400)
    cli.main(
        [
            "distill",
            "--teacher",
            str(teacher),
            "--student",
            str(student),
            "--out",
            str(tmp_path / "run"),
            "--text",
            str(text),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--sequence-length",
            "8",
            "--checkpoint-every",
            "2",
        ]
    )
    assert (tmp_path / "run" / "student.keras").exists()
