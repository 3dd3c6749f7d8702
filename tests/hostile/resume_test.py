"""Resumes that would ignore what changed, and numbers from nothing.

`compress --resume` with any setting that shapes the result changed is
refused naming the setting and both values; a checkpoint whose manifest
claims another step than the set holds (step 999 of 999) is refused, and a
set whose manifest is a link out of the checkpoint is named as such;
`compress --eval` on text too short to measure is refused with the count,
before anything runs. Every refusal leaves the run folder as it was.
"""

import json
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")

from keras_guide import cli  # noqa: E402
from keras_guide.workflows import checkpoint  # noqa: E402
from tests.harness.workspace import WORDS  # noqa: E402
from tests.harness.workspace import ctrl_c_at  # noqa: E402
from tests.harness.workspace import file_hashes  # noqa: E402
from tests.harness.workspace import make_gguf_workspace  # noqa: E402

QUICK = [
    "--steps",
    "4",
    "--batch-size",
    "4",
    "--sequence-length",
    "16",
    "--calibration-tokens",
    "256",
    "--checkpoint-every",
    "1",
    "--candidates",
    "1",
    "--eval-tokens",
    "64",
    "--kd",
    "off",
    # Data-free GUIDE options: no calibration pass (the cheapest run).
    "--projection",
    "select",
    "--select",
    "uniform",
    "--layer-map",
    "first",
]


def _command(root, out, *extra, eval_text=None):
    return [
        "compress",
        str(root / "teacher.gguf"),
        "--size",
        "50%",
        "--text",
        str(root / "train"),
        "--eval",
        str(eval_text or root / "eval"),
        "--out",
        str(out),
        *QUICK,
        *extra,
    ]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A compress run stopped by Ctrl-C at step 3 (checkpoints of steps 1, 2)."""
    root = make_gguf_workspace(tmp_path_factory.mktemp("resume"))
    with ctrl_c_at(3):
        assert cli.main(_command(root, root / "run")) == 130
    return root


@pytest.fixture
def run(interrupted, tmp_path):
    """A copy of the interrupted run, and its files' hashes."""
    out = tmp_path / "run"
    shutil.copytree(interrupted / "run", out)
    return out, file_hashes(out)


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--size", "60%"], r"--size: '\d[\d,]* parameters' -> '\d[\d,]* parameters'"),
        (["--seed", "1"], "--seed: 0 -> 1"),
        (["--learning-rate", "0.01"], "--learning-rate: 0.002 -> 0.01"),
        (["--candidates", "3"], "--candidates: 1 -> 3"),
        (["--calibration-tokens", "300"], "--calibration-tokens: 256 -> 300"),
        # The run trained on cross-entropy alone (--kd off, the cheapest).
        (
            ["--kd", "on", "--temperature", "2"],
            r"--kd/--temperature/--student-loss-weight/--top-k: None -> "
            r"\{'temperature': 2.0, 'student_loss_weight': 0.5\}",
        ),
        (
            ["--norm", "reset"],
            r"the GUIDE options: \{'layer_map': 'first', "
            r"'projection': 'select', 'select': 'uniform'\} -> "
            r"\{'layer_map': 'first', 'norm': 'reset', ",
        ),
        (["--sequence-length", "12"], "--sequence-length: 16 -> 12"),
    ],
)
def test_a_resume_with_another_setting_is_refused_naming_it(
    interrupted, run, capsys, extra, named
):
    import re

    out, before = run
    capsys.readouterr()
    assert cli.main(_command(interrupted, out, "--resume", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(named, err[0]), err
    assert f"the run in {out} was made with other settings" in err[0]
    assert file_hashes(out) == before


def test_a_resume_with_other_text_is_refused_naming_it(
    interrupted, run, capsys, tmp_path
):
    out, before = run
    other = tmp_path / "other_eval.txt"
    other.write_text(" ".join(np.random.default_rng(5).choice(WORDS, 3000)))
    capsys.readouterr()
    assert cli.main(_command(interrupted, out, "--resume", eval_text=other)) == 2
    err = capsys.readouterr().err
    assert "--eval: '" in err and " tokens in " in err and "--text:" not in err
    assert file_hashes(out) == before


def _newest_set(out):
    return checkpoint._sets(checkpoint.checkpoint_dir(str(out)))[0]


def test_a_manifest_claiming_another_step_is_refused(interrupted, run, capsys):
    out, _ = run
    newest = _newest_set(out)
    manifest_path = os.path.join(newest, checkpoint.MANIFEST_FILE)
    with open(manifest_path) as f:
        manifest = json.load(f)
    held = manifest["step"], manifest["num_steps"]
    manifest.update(step=999, num_steps=999)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    # Named as its step, so the set looks whole.
    os.rename(newest, os.path.join(os.path.dirname(newest), "step-00000999"))
    before = file_hashes(out)
    capsys.readouterr()
    assert cli.main(_command(interrupted, out, "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert (
        f"claims step 999 of 999 in its manifest.json, but its state.json holds "
        f"step {held[0]} of {held[1]}"
    ) in err[0]
    assert file_hashes(out) == before
    assert not (out / "distill.json").exists()


def test_a_manifest_outside_the_checkpoint_is_named(interrupted, run, capsys, tmp_path):
    out, _ = run
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for path in checkpoint._sets(checkpoint.checkpoint_dir(str(out))):
        manifest = os.path.join(path, checkpoint.MANIFEST_FILE)
        copy = outside / f"{os.path.basename(path)}.json"
        shutil.move(manifest, copy)
        os.symlink(copy, manifest)
    before = file_hashes(out)
    capsys.readouterr()
    assert cli.main(_command(interrupted, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert "has no complete checkpoint to resume (2 incomplete sets: " in err
    assert (
        f"step-00000002/manifest.json is a link to "
        f"{os.path.realpath(outside)}/step-00000002.json, outside the "
        "checkpoint"
    ) in err
    assert "every save was interrupted" not in err
    assert file_hashes(out) == before


@pytest.mark.parametrize("words", [0, 5])
def test_held_out_text_too_short_to_measure_is_refused(
    interrupted, tmp_path, capsys, words
):
    import re

    short = tmp_path / "short.txt"
    short.write_text(" ".join(["the"] * words))
    out = tmp_path / "out"
    assert cli.main(_command(interrupted, out, eval_text=short)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    # An empty file still makes a line end and the end-of-text token.
    found = re.search(
        r"--eval holds (\d+) tokens to predict; measuring loss, KL "
        r"and agreement needs at least 16 \(one window of "
        r"--sequence-length 16\)",
        err[0],
    )
    assert found and 2 + words <= int(found.group(1)) < 16, err
    assert not out.exists() or not os.listdir(out)
    assert short.read_text() == " ".join(["the"] * words)
