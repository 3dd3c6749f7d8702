"""`keras-guide compress` on 1 and 4 devices, and a 4-device run stopped
by Ctrl-C and resumed by two processes of one device each (run with 4
simulated JAX devices; the two processes are `keras-guide` commands joined
by `keras.distribution.initialize`).

Prints the device count JAX sees, each run's held-out losses (student and
teacher, from report.json), the devices its report states and the devices
its teacher's and student's weights lay on as training began (in this
process), the 4-device run's llama.cpp checks (its student's .gguf against
the Keras student), the two processes' exit codes, last lines, what they
left in the run's folder and in their temporary folder, and the largest
difference of the 4-device and the resumed students' weights from the
1-device student's, absolute and relative to the largest weight. Only the
4-device run and the two processes run llama.cpp (the slowest part).
"""

import contextlib
import io
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

import keras
import numpy as np
from common import emit

from keras_guide import cli
from keras_guide.gguf import runtime
from keras_guide.workflows import distill as distill_lib
from tests.harness.workspace import ctrl_c_at
from tests.harness.workspace import file_hashes
from tests.harness.workspace import make_gguf_workspace

# A tiny budget (tests/hostile/resume_test.py's), with the live teacher's KD
# so that the teacher runs distributed too; batch 4 splits over 4 devices.
QUICK = [
    "--size",
    "50%",
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
    "--projection",
    "select",
    "--select",
    "uniform",
    "--layer-map",
    "first",
]


# Per run: the devices the teacher's and student's weights lay on, and the
# distribution in force, as training began.
PLACED = {}


@contextlib.contextmanager
def _watched(name, llama_cpp):
    distill, available = distill_lib.distill, runtime.available

    def watched(teacher, student, *args, **kwargs):
        PLACED[name] = {
            "distribution": type(keras.distribution.distribution()).__name__,
            "teacher": sorted(
                {len(w.value.sharding.device_set) for w in teacher.weights}
            ),
            "student": sorted(
                {len(w.value.sharding.device_set) for w in student.weights}
            ),
            # How many weights are split over the devices, not copied.
            "split": [
                sum(not w.value.sharding.is_fully_replicated for w in model.weights)
                for model in (teacher, student)
            ],
        }
        return distill(teacher, student, *args, **kwargs)

    distill_lib.distill = watched
    if not llama_cpp:
        runtime.available = lambda: False
    try:
        yield
    finally:
        distill_lib.distill, runtime.available = distill, available


def _compress(root, out, *extra, llama_cpp=False):
    with _watched(out.name, llama_cpp):
        return cli.main(
            [
                "compress",
                str(root / "teacher.gguf"),
                "--text",
                str(root / "train"),
                "--eval",
                str(root / "eval"),
                "--out",
                str(out),
                *QUICK,
                *extra,
            ]
        )


def _two_processes(root, out, *extra):
    """`keras-guide compress` in two processes of one device each."""
    with socket.socket() as free:
        free.bind(("localhost", 0))
        port = free.getsockname()[1]
    scratch = root / "process_tmp"
    scratch.mkdir()
    started = []
    for index in range(2):
        env = dict(
            os.environ,
            XLA_FLAGS="--xla_force_host_platform_device_count=1",
            TMPDIR=str(scratch),
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(index),
        )
        argv = [
            sys.executable,
            "-m",
            "keras_guide.cli",
            "compress",
            str(root / "teacher.gguf"),
            "--text",
            str(root / "train"),
            "--eval",
            str(root / "eval"),
            "--out",
            str(out),
            *QUICK,
            *extra,
        ]
        started.append(
            subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=600)[0] for process in started]
    return {
        "codes": [process.returncode for process in started],
        "last_lines": [text.strip().splitlines()[-1:] for text in outputs],
        "tail": [text[-1500:] for text in outputs],
        "scratch_left": sorted(os.listdir(scratch)),
        "out_files": sorted(os.listdir(out)),
    }


def _weights(out, name="student.keras"):
    model = keras.saving.load_model(out / name)
    return {
        w.path: np.asarray(keras.ops.convert_to_numpy(w.value), np.float64)
        for w in model.weights
    }


def _run(out):
    report = json.loads((out / "report.json").read_text())
    return {
        "student_loss": report["evaluation"]["student_loss"],
        "teacher_loss": report["evaluation"]["teacher_loss"],
        "trained_loss": report["training"]["held_out_loss"],
        "devices": report.get("devices"),
        "model_parallel": report.get("model_parallel"),
        "devices_line": next(
            line
            for line in (out / "report.md").read_text().splitlines()
            if line.startswith("Devices: ")
        ),
        "start_step": report["training"]["start_step"],
        "llama_cpp": report.get("llama_cpp"),
    }


def _difference(a, b):
    scale = max(float(np.abs(v).max(initial=0.0)) for v in a.values())
    diff = max(float(np.abs(a[k] - b[k]).max(initial=0.0)) for k in a)
    return {"abs": diff, "rel": diff / scale, "same_paths": sorted(a) == sorted(b)}


def main():
    root = make_gguf_workspace(pathlib.Path(tempfile.mkdtemp()))
    codes = {
        "1": _compress(root, root / "one", "--devices", "1"),
        "4": _compress(root, root / "four", "--devices", "4", llama_cpp=True),
    }
    with ctrl_c_at(3):
        codes["4 stopped"] = _compress(root, root / "resumed", "--devices", "4")
    processes = _two_processes(root, root / "resumed", "--devices", "2", "--resume")
    codes["4 sharded"] = _compress(
        root, root / "sharded", "--devices", "4", "--model-parallel", "2"
    )
    before = file_hashes(root / "one")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        codes["3 refused"] = _compress(
            root,
            root / "one",
            "--devices",
            "3",
            "--batch-size",
            "3",
            "--model-parallel",
            "3",
            "--overwrite",
        )
    one = _weights(root / "one")
    emit(
        {
            "jax_devices": len(keras.distribution.list_devices()),
            "codes": codes,
            "processes": processes,
            "refused": {
                "lines": err.getvalue().strip().splitlines(),
                "unchanged": file_hashes(root / "one") == before,
            },
            "runs": {
                name: _run(root / name)
                for name in ("one", "four", "resumed", "sharded")
            },
            "placed": PLACED,
            "trained_vs_initial": _difference(
                one, _weights(root / "one", "initial_student.keras")
            ),
            "four_vs_one": _difference(one, _weights(root / "four")),
            "resumed_vs_one": _difference(one, _weights(root / "resumed")),
            "sharded_vs_one": _difference(one, _weights(root / "sharded")),
            "distribution_left_set": keras.distribution.distribution() is not None,
        }
    )


if __name__ == "__main__":
    main()
