"""Checkpoints of `keras-guide distill` under `kill -9`, and honest resumes.

A real `keras-guide distill` process (`tests/workflows/kill_at.py`) is
killed with SIGKILL at every stage of a checkpoint save and of the final
writes (on PyTorch; at four of them on the other backends); each run then
resumes (in this process) and must end with the uninterrupted run's
student, bit for bit, with dropout on. A resume whose settings differ is
refused with every difference, and changes nothing.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_guide import _files
from keras_guide import cli
from keras_guide.demo import data
from keras_guide.demo import models
from keras_guide.workflows import checkpoint
from tests.harness.workspace import ctrl_c_at
from tests.harness.workspace import file_hashes
from tests.harness.workspace import make_workspace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {
    "vocabulary_size": 2048,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "dropout": 0.1,
    "max_sequence_length": 16,
}
STEPS, KILL_STEP = 3, 2
FINAL = (
    "final:student.keras:tmp",
    "final:student.keras",
    "final:distill.json:tmp",
    "final:distill.json",
)
STAGES = checkpoint.STAGES + FINAL
# Every stage on PyTorch (whose processes start fastest: 15 s for four here,
# where TensorFlow took 57 s and JAX 103 s for the 14); on the other backends,
# whose checkpoints differ only in the optimizer and random state they hold,
# a kill before, inside and after a checkpoint's files, and in the final writes.
BACKEND_STAGES = ("begin", "optimizer.npz:tmp", "manifest.json", "final:student.keras")
RUN_STAGES = STAGES if keras.backend.backend() == "torch" else BACKEND_STAGES


def _command(root, out, *extra):
    return [
        "distill",
        "--teacher",
        str(root / "teacher.keras"),
        "--student",
        str(root / "student.keras"),
        "--text",
        str(root / "texts"),
        "--tokenizer",
        "demo",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--sequence-length",
        "8",
        "--checkpoint-every",
        "1",
        "--steps",
        str(STEPS),
        *extra,
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """PyTorch on one thread here and in the killed processes.

    The uninterrupted run happens in this process and the killed ones in
    children; with several threads, a CPU reduction may split its sum
    differently when the cores are busy, and the bit-for-bit comparison then
    fails by round-off (seen once: 6.5e-8 with three runs on two cores).
    """
    if keras.backend.backend() != "torch":
        yield {}
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {"OMP_NUM_THREADS": "1"}
    torch.set_num_threads(threads)


def _weights(path):
    model = keras.saving.load_model(path)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A teacher and a student with dropout, text, and an uninterrupted run."""
    root = make_workspace(tmp_path_factory.mktemp("crash"), TINY)
    assert cli.main(_command(root, root / "straight")) == 0
    return root


@pytest.fixture(scope="module")
def killed(workspace, one_thread):
    """Starts one process per stage (three at a time), each killed there."""
    env = dict(
        os.environ,
        **one_thread,
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    pending = list(RUN_STAGES)
    running, done = {}, {}
    while pending or running:
        while pending and len(running) < 3:
            stage = pending.pop(0)
            step = STEPS if stage.startswith("final:") else KILL_STEP
            out = workspace / ("killed_" + stage.replace(":", "_"))
            argv = [
                sys.executable,
                "-m",
                "tests.workflows.kill_at",
                stage,
                str(step),
                *_command(workspace, out),
            ]
            running[stage] = (
                out,
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                ),
            )
        for stage, (out, process) in list(running.items()):
            if process.poll() is not None:
                done[stage] = (out, process.returncode, process.stderr.read())
                del running[stage]
        time.sleep(0.2)
    return done


@pytest.fixture(scope="module")
def interrupted(workspace):
    """A run stopped by Ctrl-C before step 2 (checkpoints of steps 1 and 2)."""
    out = workspace / "interrupted"
    with ctrl_c_at(2):
        assert cli.main(_command(workspace, out)) == 130
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage", RUN_STAGES)
def test_a_kill_at_any_stage_resumes_to_the_uninterrupted_result(
    stage, killed, workspace, capsys
):
    out, returncode, stderr = killed[stage]
    assert returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    capsys.readouterr()
    code = cli.main(_command(workspace, out, "--resume"))
    printed = capsys.readouterr()
    if stage == "final:distill.json":
        # Killed after the run's last write: it is finished, and says so.
        assert code == 2 and "has finished" in printed.err
    else:
        saved = stage.startswith("final:") or checkpoint.STAGES.index(stage) >= (
            checkpoint.STAGES.index("manifest.json")
        )
        step = (
            (STEPS if stage.startswith("final:") else KILL_STEP)
            if saved
            else (KILL_STEP - 1)
        )
        assert code == 0, printed.err
        assert f"Resuming from checkpoint step {step} of {STEPS}" in printed.out
        if not saved:
            assert "skipped incomplete newer sets: step-00000002" in printed.out
    for got, want in zip(
        _weights(out / "student.keras"),
        _weights(workspace / "straight" / "student.keras"),
    ):
        np.testing.assert_array_equal(got, want)
    result = json.loads((out / "distill.json").read_text())
    straight = json.loads((workspace / "straight" / "distill.json").read_text())
    assert result["held_out_loss"] == straight["held_out_loss"]
    assert not [n for n in os.listdir(out) if _files.is_temporary(n)]


def test_runs_with_dropout_reproduce_and_seeds_change_them(workspace):
    assert (
        keras.saving.load_model(workspace / "student.keras").backbone.get_config()[
            "dropout"
        ]
        == 0.1
    )
    assert cli.main(_command(workspace, workspace / "again")) == 0
    assert cli.main(_command(workspace, workspace / "seed1", "--seed", "1")) == 0
    want = _weights(workspace / "straight" / "student.keras")
    for got, ref in zip(_weights(workspace / "again" / "student.keras"), want):
        np.testing.assert_array_equal(got, ref)
    other = _weights(workspace / "seed1" / "student.keras")
    assert any(not np.array_equal(a, b) for a, b in zip(other, want))


def test_a_resume_with_other_settings_is_refused_listing_each(
    workspace, interrupted, capsys, tmp_path
):
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    before = file_hashes(out)
    # Another teacher, student and text, each with the same file names.
    other = tmp_path / "other"
    shutil.copytree(workspace / "texts", other / "texts")
    (other / "texts" / "tempest.txt").write_text(data.load_texts(["macbeth"])[0][:3000])
    models.build_causal_lm(TINY, seed=2).save(other / "teacher.keras")
    shutil.copy(workspace / "student.keras", other / "student.keras")
    capsys.readouterr()
    changed = _command(
        other,
        out,
        "--resume",
        "--learning-rate",
        "0.002",
        "--batch-size",
        "3",
        "--temperature",
        "3",
        "--seed",
        "4",
        "--sequence-length",
        "9",
    )
    assert cli.main(changed) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    for name in (
        "teacher",
        "data",
        "learning_rate: 0.001 -> 0.002",
        "batch_size: 2 -> 3",
        "temperature: 1.0 -> 3.0",
        "seed: 0 -> 4",
    ):
        assert name in err, (name, err)
    assert "student:" not in err  # the same student file
    # A different initial student alone is refused too.
    assert (
        cli.main(
            [
                "init",
                str(workspace / "teacher.keras"),
                "--out",
                str(other / "student.keras"),
                "--hidden-dim",
                "8",
                "--num-heads",
                "1",
                "--intermediate-dim",
                "16",
                "--norm",
                "reset",
                "--overwrite",
            ]
        )
        == 0
    )
    command = _command(workspace, out, "--resume")
    command[command.index("--student") + 1] = str(other / "student.keras")
    assert cli.main(command) == 2
    assert "1 differences" in capsys.readouterr().err
    assert file_hashes(out) == before


def test_resume_without_a_checkpoint_or_only_torn_sets_says_so(
    workspace, interrupted, capsys, tmp_path
):
    assert cli.main(_command(workspace, tmp_path / "none", "--resume")) == 2
    assert "has no complete checkpoint to resume" in capsys.readouterr().err
    torn = tmp_path / "torn"
    shutil.copytree(interrupted, torn)
    for step in (1, 2):
        os.remove(torn / "checkpoint" / f"step-{step:08d}" / "manifest.json")
    assert cli.main(_command(workspace, torn, "--resume")) == 2
    assert "2 incomplete sets" in capsys.readouterr().err
    assert cli.main(_command(workspace, torn)) == 2
    assert "--overwrite" in capsys.readouterr().err
