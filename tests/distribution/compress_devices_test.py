"""`keras-guide compress --devices N`: data parallelism over N devices
(keras.distribution on JAX), in one process or several.

On 4 simulated JAX devices (`scenarios/compress_devices.py`, its own
process), the same run on 1 and 4 devices, and a 4-device run stopped by
Ctrl-C and resumed by two `keras-guide` processes of one device each
(joined by `keras.distribution.initialize`), give the same student and
held-out losses to float round-off; the reports state the device count, and
the two processes leave one report. In this process, on every backend: the
refusals (several devices off JAX, a batch they do not divide, more devices
than exist, a multi-process environment off JAX or without its coordinator),
each one line, before `--out` is touched.
"""

import keras
import pytest

from keras_guide import cli
from tests.distribution.multi_device_test import _run
from tests.harness.workspace import file_hashes

_ROUND_OFF = 1e-5


@pytest.fixture(scope="module")
def runs():
    pytest.importorskip("gguf", reason="a GGUF teacher needs `pip install gguf`")
    return _run("compress_devices.py", "jax", devices=4)


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns its own JAX process with 4 simulated devices; "
    "keras.distribution runs on JAX",
)
def test_four_devices_and_a_resume_by_two_processes_give_the_one_device_student(runs):
    assert runs["jax_devices"] == 4
    assert runs["codes"] == {
        "1": 0,
        "4": 0,
        "4 stopped": 130,
        "4 sharded": 0,
        "3 refused": 2,
    }
    processes = runs["processes"]
    assert processes["codes"] == [0, 0], processes["tail"]
    # Process 0 printed the report; process 1 says where it is, and left no
    # private folder behind; the run folder holds one report.
    assert processes["last_lines"][1][0].startswith(
        "Process 1 of 2 done; process 0 wrote the report"
    )
    assert processes["scratch_left"] == []
    assert processes["out_files"].count("report.json") == 1
    assert runs["runs"]["resumed"]["devices_line"].endswith(
        ", in 2 processes (keras.distribution.initialize)"
    )
    assert "run.json" in processes["out_files"]
    placed = runs["placed"]
    # Every weight of teacher and student replicated over the run's devices.
    assert placed["one"] == {
        "distribution": "NoneType",
        "teacher": [1],
        "student": [1],
        "split": [0, 0],
    }
    assert placed["four"] == {
        "distribution": "DataParallel",
        "teacher": [4],
        "student": [4],
        "split": [0, 0],
    }
    # --model-parallel 2: KerasHub's Llama layout map splits the attention
    # and MLP kernels of both models over the (2, 2) mesh.
    sharded = placed["sharded"]
    assert sharded["distribution"] == "ModelParallel"
    assert sharded["split"][0] >= 5 and sharded["split"][1] >= 5, sharded
    assert not runs["distribution_left_set"]
    # A mesh the teacher's sizes do not divide: one line naming the weight,
    # before the previous run in --out (with --overwrite) is touched.
    refused = runs["refused"]
    assert len(refused["lines"]) == 1 and refused["unchanged"], refused
    assert "--model-parallel 3: The teacher's weight" in refused["lines"][0]
    assert "not a multiple of 3" in refused["lines"][0]
    # Training moved the student far more than the devices changed it.
    assert runs["trained_vs_initial"]["rel"] > 1e-3
    for other in ("four_vs_one", "resumed_vs_one", "sharded_vs_one"):
        assert runs[other]["same_paths"]
        assert runs[other]["rel"] < _ROUND_OFF, (other, runs[other])
    one = runs["runs"]["one"]
    for name, devices in (("one", 1), ("four", 4), ("resumed", 2), ("sharded", 4)):
        run = runs["runs"][name]
        assert run["devices"] == devices
        assert run["devices_line"].startswith(f"Devices: {devices}")
        assert ("ModelParallel" in run["devices_line"]) == (name == "sharded")
        for loss in ("student_loss", "teacher_loss", "trained_loss"):
            assert run[loss] == pytest.approx(one[loss], abs=_ROUND_OFF), (name, loss)
    assert runs["runs"]["resumed"]["start_step"] == 3
    # llama.cpp ran the 4-device student's .gguf (a child process) and agrees.
    parity = runs["runs"]["four"]["llama_cpp"]["parity"]
    assert parity["kl"] < 0.05 and parity["top1_agreement"] > 0.9, parity


@pytest.fixture
def previous_run(tmp_path):
    """A workspace whose --out holds a previous run's file (which
    --overwrite would delete)."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.txt").write_text("the in a on " * 200)
    (tmp_path / "teacher.gguf").write_bytes(b"not read before the refusal")
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("{}")
    return tmp_path, file_hashes(out)


def _refused(root, capsys, *flags):
    capsys.readouterr()
    code = cli.main(
        [
            "compress",
            str(root / "teacher.gguf"),
            "--text",
            str(root / "train"),
            "--out",
            str(root / "run"),
            "--overwrite",
            *flags,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (code, err)
    return err[0]


@pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="the refusal of other backends"
)
def test_several_devices_off_jax_are_refused(previous_run, capsys):
    root, before = previous_run
    line = _refused(root, capsys, "--devices", "2")
    assert "keras.distribution" in line and "JAX" in line, line
    assert f"backend '{keras.backend.backend()}'" in line
    assert file_hashes(root / "run") == before


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution runs on JAX"
)
def test_more_devices_than_exist_are_refused_naming_the_count(previous_run, capsys):
    root, before = previous_run
    count = len(keras.distribution.list_devices())
    line = _refused(
        root, capsys, "--devices", str(count + 1), "--batch-size", str(count + 1)
    )
    assert f"JAX sees {count} device(s)" in line, line
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=N" in line
    assert f"Received: --devices {count + 1}" in line
    assert file_hashes(root / "run") == before


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution runs on JAX"
)
def test_a_batch_the_devices_do_not_divide_is_refused(previous_run, capsys):
    root, before = previous_run
    line = _refused(root, capsys, "--devices", "2", "--batch-size", "3")
    assert "--batch-size must be a multiple of --devices 2" in line, line
    assert "Received: --batch-size 3" in line
    assert file_hashes(root / "run") == before


def test_devices_must_be_a_positive_integer(previous_run, capsys):
    root, before = previous_run
    with pytest.raises(SystemExit) as exit_:
        cli.main(
            [
                "compress",
                str(root / "teacher.gguf"),
                "--text",
                str(root / "train"),
                "--out",
                str(root / "run"),
                "--devices",
                "0",
            ]
        )
    assert exit_.value.code == 2
    assert "--devices: must be an integer > 0" in capsys.readouterr().err
    assert file_hashes(root / "run") == before


@pytest.mark.parametrize(
    "environment, expected",
    [
        (
            {"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"},
            "KERAS_DISTRIBUTION_NUM_PROCESSES must be a positive integer",
        ),
        (
            {"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"},
            "set KERAS_DISTRIBUTION_JOB_ADDRESSES and KERAS_DISTRIBUTION_PROCESS_ID"
            if keras.backend.backend() == "jax"
            else "set KERAS_BACKEND=jax",
        ),
    ],
)
def test_a_multi_process_environment_that_cannot_start_is_refused(
    previous_run, capsys, monkeypatch, environment, expected
):
    root, before = previous_run
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    line = _refused(root, capsys, "--devices", "2", "--batch-size", "2")
    assert expected in line, line
    assert file_hashes(root / "run") == before


def test_a_model_parallel_size_the_devices_do_not_divide_is_refused(
    previous_run, capsys
):
    root, before = previous_run
    line = _refused(root, capsys, "--devices", "1", "--model-parallel", "2")
    if keras.backend.backend() == "jax":
        assert "--model-parallel 2 must divide --devices 1" in line, line
    else:
        assert "keras.distribution" in line and "JAX" in line, line
    assert file_hashes(root / "run") == before
