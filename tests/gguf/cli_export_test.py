"""The command line writes students where llama.cpp and KerasHub open them:
`init` and `distill` with `--export`, and the `export` command."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")

from keras_guide import cli  # noqa: E402
from keras_guide.gguf import GGUFFile  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
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


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.backbone.weights]


def test_init_exports_gguf_and_preset_next_to_the_student(tmp_path, capsys):
    teacher = tiny.write_llama(
        tmp_path / "teacher.gguf", metadata={"llama.context_length": 64}
    )
    out = tmp_path / "student.keras"
    assert (
        cli.main(
            [
                "init",
                str(teacher),
                "--out",
                str(out),
                *SIZES,
                "--export",
                "gguf",
                "preset",
                "--gguf-dtype",
                "float16",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for name in ("student.keras", "student.gguf", "student_preset"):
        assert f"Wrote {tmp_path / name}" in printed
    student = keras.saving.load_model(out)
    f = GGUFFile(tmp_path / "student.gguf")
    assert f.tensor_type("blk.0.attn_q.weight") == "F16"
    # The teacher's tokenizer and context length travel with the file.
    assert f.get("llama.context_length") == 64
    assert f.get("tokenizer.ggml.merges") == GGUFFile(teacher).get(
        "tokenizer.ggml.merges"
    )
    import keras_hub

    preset = keras_hub.models.CausalLM.from_preset(str(tmp_path / "student_preset"))
    for got, want in zip(_weights(preset), _weights(student)):
        np.testing.assert_array_equal(got, want)
    # A second run refuses to replace them without --overwrite.
    assert (
        cli.main(["init", str(teacher), "--out", str(out), *SIZES, "--export", "gguf"])
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err


def test_export_command_each_format_and_refusals(tmp_path, capsys, gemma3_gguf):
    teacher = gemma3_gguf
    model = tmp_path / "model.keras"
    load_gguf(teacher).save(model)
    before = teacher.read_bytes()
    assert (
        cli.main(
            [
                "export",
                str(model),
                "--out",
                str(tmp_path / "m.gguf"),
                "--gguf-dtype",
                "q8_0",
                "--tokenizer-from",
                str(teacher),
            ]
        )
        == 0
    )
    assert GGUFFile(tmp_path / "m.gguf").tensor_type("blk.0.attn_q.weight") == "Q8_0"
    assert cli.main(["export", str(model), "--out", str(tmp_path / "preset")]) == 0
    assert os.path.exists(tmp_path / "preset" / "config.json")
    capsys.readouterr()
    # Never over an input, and never over a previous output unless told.
    assert (
        cli.main(
            [
                "export",
                str(model),
                "--out",
                str(teacher),
                "--tokenizer-from",
                str(teacher),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "would write over or into the input" in capsys.readouterr().err
    assert cli.main(["export", str(model), "--out", str(model), "--overwrite"]) == 2
    assert "would write over or into the input MODEL" in capsys.readouterr().err
    assert cli.main(["export", str(model), "--out", str(tmp_path / "m.gguf")]) == 2
    assert "holds the output of a previous run" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "export",
                str(tmp_path / "absent.keras"),
                "--out",
                str(tmp_path / "x.gguf"),
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert teacher.read_bytes() == before
    assert not os.path.exists(tmp_path / "x.gguf")


def test_a_preset_loads_in_a_fresh_process_and_generates_the_same_text(
    tmp_path, gemma3_gguf
):
    lm = load_gguf(gemma3_gguf)
    lm.compile(sampler="greedy")
    expected = lm.generate("the a", max_length=10)
    from keras_guide.workflows import export

    export.write_preset(lm, str(tmp_path / "preset"))
    code = (
        "import keras_guide.gguf, keras_hub\n"
        f"lm = keras_hub.models.CausalLM.from_preset({str(tmp_path / 'preset')!r})\n"
        "lm.compile(sampler='greedy')\n"
        "print(repr(lm.generate('the a', max_length=10)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == repr(expected)
