"""The command line writes and reads Hugging Face folders: `export --format
hf`, `--export hf` on `init`, and a folder as the teacher of `init`."""

import json
import os

import pytest

pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")

from keras_guide import cli  # noqa: E402
from keras_guide.hf import writer  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402

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
    "--data-free",
]


def test_export_writes_a_folder_and_refuses_what_it_cannot(tmp_path, capsys):
    teacher = tiny.write_llama(
        tmp_path / "teacher.gguf", metadata={"llama.context_length": 64}
    )
    out = tmp_path / "hf"
    assert (
        cli.main(
            [
                "export",
                str(teacher),
                "--out",
                str(out),
                "--format",
                "hf",
                "--gguf-dtype",
                "bfloat16",
                "--tokenizer-from",
                str(teacher),
            ]
        )
        == 0
    )
    assert f"Wrote {out}" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == sorted(writer.FILES)
    config = json.load(open(out / "config.json"))
    assert config["dtype"] == "bfloat16"
    assert config["max_position_embeddings"] == 64
    for argv, message in [
        (["--format", "hf"], "a previous run ("),
        (  # `--dtype`, the option's old name, still works
            ["--format", "hf", "--dtype", "q8_0", "--overwrite"],
            "--format hf writes float32, float16, bfloat16 weights",
        ),
        (["--format", "gguf"], "--format gguf writes a .gguf file"),
    ]:
        assert cli.main(["export", str(teacher), "--out", str(out), *argv]) == 2
        assert message in capsys.readouterr().err, argv
    assert json.load(open(out / "config.json"))["dtype"] == "bfloat16"


def test_init_exports_hf_and_takes_a_folder_as_its_teacher(tmp_path, capsys):
    teacher = tiny.write_llama(
        tmp_path / "teacher.gguf", metadata={"llama.context_length": 64}
    )
    out = tmp_path / "student.keras"
    assert (
        cli.main(["init", str(teacher), "--out", str(out), *SIZES, "--export", "hf"])
        == 0
    )
    folder = tmp_path / "student_hf"
    assert f"Wrote {folder}" in capsys.readouterr().out
    # The teacher's tokenizer and context length travel with the folder.
    assert json.load(open(folder / "config.json"))["max_position_embeddings"] == 64
    # The folder is a teacher in its own right.
    again = tmp_path / "again.keras"
    assert cli.main(["init", str(folder), "--out", str(again), *SIZES]) == 0
    assert os.path.exists(again)
