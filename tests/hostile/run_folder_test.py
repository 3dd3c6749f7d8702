"""Two runs, one folder: a run folder is owned by one process at a time.

A real `keras-guide distill` process is held still inside its run
(`tests/hostile/pause_at.py`); a second one into the same `--out`, even with
`--overwrite`, is refused with one line naming the folder and the first's
pid, and changes nothing; the first then finishes with its result whole.
A lock left by a process that is gone is taken over, saying so; `compress`
is refused the same way.
"""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_guide import cli
from keras_guide.workflows import run
from tests.harness.workspace import file_hashes
from tests.harness.workspace import make_workspace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {
    "vocabulary_size": 2048,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "dropout": 0.0,
    "max_sequence_length": 16,
}
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


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
        "2",
        *extra,
    ]


def _weights(path):
    model = keras.saving.load_model(path)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from keras_guide.demo import models

    root = make_workspace(tmp_path_factory.mktemp("two_runs"), TINY, student=False)
    # A student of its own shape, unguided: what is trained does not matter.
    models.build_causal_lm(
        {**TINY, "hidden_dim": 8, "intermediate_dim": 16}, seed=2
    ).save(root / "student.keras")
    return root


def _ended_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _wait_for(path, process, seconds=300):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "the first run never reached its save"
        time.sleep(0.1)


def test_a_second_run_is_refused_while_the_first_runs(workspace, tmp_path, capsys):
    out, signals = tmp_path / "run", tmp_path / "signals"
    signals.mkdir()
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.hostile.pause_at",
            str(signals),
            *_command(workspace, out),
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(signals / "paused", first)
        lock = json.loads((out / run.LOCK_FILE).read_text())
        assert lock == {**lock, "pid": first.pid, "host": socket.gethostname()}
        before = file_hashes(out)
        # The second run, in this process, while the first one runs.
        capsys.readouterr()
        assert cli.main(_command(workspace, out, "--overwrite")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("keras-guide distill: error:")
        assert (
            f"--out {out} is in use by another run (process {first.pid} on "
            f"{socket.gethostname()}" in err[0]
        )
        assert file_hashes(out) == before
    finally:
        (signals / "go").touch()
        stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr.decode()[-3000:]
    # The first run's result, whole: finished, trained from step 0, its
    # student complete.
    result = json.loads((out / "distill.json").read_text())
    assert result["finished"] and result["steps"] == 2
    assert result["start_step"] == 0 and np.isfinite(result["held_out_loss"])
    assert all(np.all(np.isfinite(w)) for w in _weights(out / "student.keras"))
    # Its lock went with it.
    assert not (out / run.LOCK_FILE).exists()


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(
    workspace, capsys, tmp_path
):
    gone = _ended_pid()
    out = tmp_path / "crashed"
    out.mkdir()
    (out / run.LOCK_FILE).write_text(
        json.dumps({"pid": gone, "host": socket.gethostname(), "started": "earlier"})
    )
    assert run.lock_run_folder(out)
    try:
        printed = capsys.readouterr().out
        assert f"Taking over {out}: its lock names process {gone} on " in printed
        assert "which is no longer running" in printed
        assert json.loads((out / run.LOCK_FILE).read_text())["pid"] == os.getpid()
        assert not run.lock_run_folder(out)  # this process owns it already
    finally:
        run.release_run_folder(out)
    assert not (out / run.LOCK_FILE).exists()
    # A lock naming a process of another host is not taken: its owner may run.
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / run.LOCK_FILE).write_text(
        json.dumps({"pid": 1, "host": "another-host", "started": "now"})
    )
    before = file_hashes(other)
    assert cli.main(_command(workspace, other, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "names process 1 on another-host" in err and "remove" in err
    assert file_hashes(other) == before


def test_compress_overwrite_never_touches_a_running_run(tmp_path, capsys):
    pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")
    from tests.harness import gguf_files as tiny

    teacher = tiny.write_llama(tmp_path / "teacher.gguf")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.txt").write_text("the cat sat on the mat " * 300)
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("{}")
    (out / "search.json").write_text("{}")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from keras_guide.workflows import run; "
            f"run.lock_run_folder({str(out)!r}); print('held', flush=True); "
            "sys.stdin.read()",
        ],
        cwd=ROOT,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        before = file_hashes(out)
        assert (
            cli.main(
                [
                    "compress",
                    str(teacher),
                    "--text",
                    str(tmp_path / "train"),
                    "--out",
                    str(out),
                    "--overwrite",
                    "--steps",
                    "2",
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert f"--out {out} is in use by another run (process {holder.pid} " in err
        assert file_hashes(out) == before
    finally:
        holder.communicate("", timeout=60)
    # Once the holder has ended (cleanly: its lock file is gone), the folder
    # is free again.
    assert not (out / run.LOCK_FILE).exists()
