"""End-to-end tests of `keras-guide` on tiny models (and the shipped teacher)."""

import json
import math
import os

import keras
import numpy as np
import pytest

from keras_guide import cli
from keras_guide.demo import data
from keras_guide.demo import models
from keras_guide.workflows import inputs
from keras_guide.workflows import text
from tests.harness.workspace import ctrl_c_at
from tests.harness.workspace import make_workspace

TINY = {
    "vocabulary_size": 2048,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 32,
    "intermediate_dim": 64,
    "dropout": 0.0,
    "max_sequence_length": 32,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(
        tmp_path_factory.mktemp("cli"),
        TINY,
        plays=("tempest", "macbeth"),
        characters=6000,
        student=False,
    )


def _finite(path, *keys):
    with open(path) as f:
        record = json.load(f)
    for key in keys:
        assert math.isfinite(record[key]), (key, record[key])
    return record


def test_init_writes_a_guided_student_that_loads(workspace, capsys):
    out = workspace / "student.keras"
    assert (
        cli.main(
            [
                "init",
                str(workspace / "teacher.keras"),
                "--out",
                str(out),
                "--hidden-dim",
                "16",
                "--num-layers",
                "1",
                "--num-heads",
                "1",
                "--intermediate-dim",
                "32",
                "--blocks",
                "all",
            ]
        )
        == 0
    )
    assert "Wrote" in capsys.readouterr().out
    student = keras.saving.load_model(out)
    assert student.backbone.hidden_dim == 16 and student.backbone.num_layers == 1
    x = {"token_ids": np.ones((1, 8), "int32"), "padding_mask": np.ones((1, 8), bool)}
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(student(x))))


def test_init_refuses_without_a_size(workspace, capsys):
    assert cli.main(["init", str(workspace / "teacher.keras"), "--out", "x.keras"]) == 2
    assert "--hidden-dim" in capsys.readouterr().err


def test_distill_trains_checkpoints_and_resumes(workspace, capsys):
    student = workspace / "student_d.keras"
    assert (
        cli.main(
            [
                "init",
                str(workspace / "teacher.keras"),
                "--out",
                str(student),
                "--hidden-dim",
                "16",
                "--num-layers",
                "1",
                "--num-heads",
                "1",
                "--intermediate-dim",
                "32",
            ]
        )
        == 0
    )

    def command(out):
        return [
            "distill",
            "--teacher",
            str(workspace / "teacher.keras"),
            "--student",
            str(student),
            "--text",
            str(workspace / "texts"),
            "--tokenizer",
            "demo",
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--sequence-length",
            "16",
            "--checkpoint-every",
            "2",
            "--steps",
            "6",
        ]

    straight = workspace / "straight"
    assert cli.main(command(straight)) == 0
    first = _finite(straight / "distill.json", "held_out_loss", "teacher_loss")
    assert first["start_step"] == 0 and (straight / "student.keras").exists()

    # A run that dies after step 4 (its checkpoint written), then resumes.
    interrupted = workspace / "interrupted"
    with ctrl_c_at(4):
        assert cli.main(command(interrupted)) == 130  # Ctrl-C: one line, no traceback
    state = json.loads(
        (interrupted / "checkpoint" / "step-00000004" / "state.json").read_text()
    )
    assert (state["step"], state["num_steps"]) == (4, 6)
    assert cli.main(command(interrupted)[:-1] + ["8", "--resume"]) == 2
    assert "num_steps: 6 -> 8" in capsys.readouterr().err
    assert cli.main(command(interrupted) + ["--resume"]) == 0
    resumed = _finite(interrupted / "distill.json", "held_out_loss")
    assert resumed["start_step"] == 4
    # Weights, optimizer state and data position are restored: the result
    # equals the uninterrupted run's.
    np.testing.assert_allclose(
        resumed["held_out_loss"], first["held_out_loss"], rtol=1e-5
    )


def test_compare_runs_the_ablation_on_user_text(workspace):
    out = workspace / "compare"
    assert 0 == cli.main(
        [
            "compare",
            "--teacher",
            str(workspace / "teacher.keras"),
            "--text",
            str(workspace / "texts"),
            "--tokenizer",
            "demo",
            "--out",
            str(out),
            "--hidden-dim",
            "16",
            "--num-layers",
            "1",
            "--num-heads",
            "1",
            "--intermediate-dim",
            "32",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--sequence-length",
            "16",
        ]
    )
    record = _finite(out / "results.json", "teacher_loss")
    assert len(record["rows"]) == 7
    for row in record["rows"]:
        assert math.isfinite(row["held_out_loss"]) and math.isfinite(row["step0_loss"])
    assert (out / "ablation.png").exists() and (out / "best_student.keras").exists()


@pytest.mark.slow
@pytest.mark.skipif(not models.has_teacher(), reason="the demo teacher is not shipped")
@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="on PyTorch only (21 s; JAX 45 s, TensorFlow 57 s): CI also runs "
    "`keras-guide demo --quick` on JAX from the built wheel, and the ablation it "
    "runs is tested on every backend by test_compare_runs_the_ablation_on_user_text",
)
def test_demo_quick_end_to_end(tmp_path, capsys):
    assert cli.main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    assert "gap closed" in capsys.readouterr().out
    record = _finite(tmp_path / "results.json", "teacher_loss")
    assert [r["variant"] for r in record["rows"]][:2] == [
        "random init (seed 0)",
        "random init (seed 1)",
    ]
    for row in record["rows"]:
        for key in ("held_out_loss", "step0_loss", "gap_closed", "tokens_per_second"):
            assert math.isfinite(row[key]), (row["variant"], key)
    for name in ("results.csv", "ablation.png", "best_student.keras"):
        assert (tmp_path / name).exists()


def test_auto_tokenizer_uses_the_teachers_preprocessor():
    import keras_hub

    from keras_guide.demo import tokenizer

    hub = tokenizer.keras_hub_tokenizer()
    teacher = keras_hub.models.GPT2CausalLM(
        backbone=keras_hub.models.GPT2Backbone(**TINY),
        preprocessor=keras_hub.models.GPT2CausalLMPreprocessor(hub, sequence_length=16),
    )
    encoder = inputs.get_encoder("auto", teacher)
    play = data.load_texts(["tempest"])[0][:2000]
    ids = encoder.encode(play)
    assert encoder.end_token_id == 2047
    assert hub.detokenize(np.asarray(ids)) == play
    text.check_vocabulary(encoder, teacher, "teacher")
    small = models.build_causal_lm(dict(TINY, vocabulary_size=1000))
    with pytest.raises(ValueError, match="vocabulary of 1000"):
        text.check_vocabulary(encoder, small, "student")


def test_calibration_windows_open_with_the_start_token(tmp_path):
    # A teacher whose tokenizer starts every sequence (Gemma's <bos>) is
    # calibrated on windows that start the same way, 255 text tokens each.
    class Encoder:
        start_token_id, end_token_id = 9, 8

        def encode(self, text):
            return [1] * len(text)

    (tmp_path / "a.txt").write_text("x" * 600)
    ids = inputs.calibration_ids([str(tmp_path)], Encoder(), 520)
    assert ids.shape == (2, 256)
    assert (ids[:, 0] == 9).all() and (ids[:, 1:] == 1).all()
    Encoder.start_token_id = None
    assert inputs.calibration_ids([str(tmp_path)], Encoder(), 520).shape == (2, 256)


def test_the_old_option_names_still_parse_and_stay_out_of_help(capsys):
    parser = cli.build_parser()
    for argv in (["distill", "--student", "S"], ["compare"]):
        argv += ["--teacher", "T", "--text", "t", "--out", "o"]
        args = parser.parse_args([*argv, "--held-out", "h1", "h2"])
        assert args.eval == ["h1", "h2"]
        assert parser.parse_args([*argv, "--eval", "h"]).eval == ["h"]
    args = parser.parse_args(
        ["export", "m.keras", "--out", "m.gguf", "--dtype", "q8_0"]
    )
    assert args.gguf_dtype == "q8_0"
    assert parser.parse_args(["export", "m.keras", "--out", "m.gguf"]).gguf_dtype == (
        "float32"
    )
    for command in ("distill", "export"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        shown = capsys.readouterr().out
        assert "[--held-out" not in shown and "[--dtype" not in shown
        assert "--gguf-dtype" in shown


def test_the_resolver_takes_the_registered_names(tmp_path, monkeypatch):
    # The commands import keras_guide.demo, which registers its names.
    test = inputs.text_paths(["shakespeare:test", "kept.txt"])
    assert test == [*data.split_paths("test"), "kept.txt"]
    assert sorted(os.path.basename(p) for p in test[:-1]) == sorted(
        f"{name}_gut.txt" for name in data.TEST_PLAYS
    )
    names = "shakespeare:test, shakespeare:train, shakespeare:validation"
    with pytest.raises(inputs.InputError, match=names):
        inputs.text_paths(["shakespeare:tests"])
    with pytest.raises(inputs.InputError, match="--eval nowhere.txt: no such file"):
        inputs.resolve_texts(
            {"--text": ["shakespeare:train"], "--eval": ["nowhere.txt"]}
        )
    assert inputs.get_encoder("demo").encode("To be") == (
        inputs.get_encoder("auto", models.build_causal_lm(TINY)).encode("To be")
    )
    # A name registered here is loaded, and listed in the refusals.
    monkeypatch.setattr(inputs, "_MODELS", dict(inputs._MODELS))
    model = models.build_causal_lm(TINY)
    inputs.register_model("tiny", lambda: model)
    assert inputs.load_model("tiny") is model
    inputs.check_exist({"TEACHER": "tiny"})
    with pytest.raises(inputs.InputError, match="demo, gemma3, smollm2, tiny"):
        inputs.check_exist({"TEACHER": str(tmp_path / "absent.keras")})
    # A registration is checked before it is kept.
    with pytest.raises(TypeError, match="callable of no argument for 'tiny2'"):
        inputs.register_model("tiny2", "tiny.keras")
    with pytest.raises(TypeError, match="non-empty string"):
        inputs.register_text("", lambda: [])
    assert "tiny2" not in inputs.model_names()
