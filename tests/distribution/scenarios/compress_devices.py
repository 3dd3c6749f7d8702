"""`keras-guide compress` on 1 and 4 devices, and a 4-device run stopped
by Ctrl-C and resumed on 2 (run with 4 simulated JAX devices).

Prints the device count JAX sees, each run's held-out losses (student and
teacher, from report.json), the devices its report states and the devices
its teacher's and student's weights lay on as training began, the
4-device run's llama.cpp checks (its student's .gguf against the Keras
student), and the largest difference of the 4-device and the resumed
students' weights from the 1-device student's, absolute and relative to the
largest weight. Only the 4-device run runs llama.cpp (the slowest part).
"""

import contextlib
import json
import pathlib
import tempfile

import keras
import numpy as np
from common import emit

from keras_guide import cli
from keras_guide.gguf import runtime
from keras_guide.workflows import distill as distill_lib
from tests.harness.workspace import ctrl_c_at
from tests.harness.workspace import make_gguf_workspace

# A tiny budget (tests/hostile/resume_test.py's), with the live teacher's KD
# so that the teacher runs distributed too; batch 4 splits over 4 devices.
QUICK = ["--size", "50%", "--steps", "4", "--batch-size", "4",
         "--sequence-length", "16", "--calibration-tokens", "256",
         "--checkpoint-every", "1", "--candidates", "1", "--eval-tokens", "64",
         "--projection", "select", "--select", "uniform", "--layer-map", "first"]


# Per run: the devices the teacher's and student's weights lay on, and the
# distribution in force, as training began.
PLACED = {}


@contextlib.contextmanager
def _watched(name, llama_cpp):
    distill, available = distill_lib.distill, runtime.available

    def watched(teacher, student, *args, **kwargs):
        PLACED[name] = {
            "distribution": type(keras.distribution.distribution()).__name__,
            "teacher": sorted({len(w.value.sharding.device_set)
                               for w in teacher.weights}),
            "student": sorted({len(w.value.sharding.device_set)
                               for w in student.weights})}
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
        return cli.main(["compress", str(root / "teacher.gguf"), "--text",
                         str(root / "train"), "--eval", str(root / "eval"),
                         "--out", str(out), *QUICK, *extra])


def _weights(out, name="student.keras"):
    model = keras.saving.load_model(out / name)
    return {w.path: np.asarray(keras.ops.convert_to_numpy(w.value), np.float64)
            for w in model.weights}


def _run(out):
    report = json.loads((out / "report.json").read_text())
    return {"student_loss": report["evaluation"]["student_loss"],
            "teacher_loss": report["evaluation"]["teacher_loss"],
            "trained_loss": report["training"]["held_out_loss"],
            "devices": report.get("devices"),
            "devices_in_report_md": "Devices: " + str(report.get("devices"))
            in (out / "report.md").read_text(),
            "start_step": report["training"]["start_step"],
            "llama_cpp": report.get("llama_cpp")}


def _difference(a, b):
    scale = max(float(np.abs(v).max(initial=0.0)) for v in a.values())
    diff = max(float(np.abs(a[k] - b[k]).max(initial=0.0)) for k in a)
    return {"abs": diff, "rel": diff / scale, "same_paths": sorted(a) == sorted(b)}


def main():
    root = make_gguf_workspace(pathlib.Path(tempfile.mkdtemp()))
    codes = {"1": _compress(root, root / "one", "--devices", "1"),
             "4": _compress(root, root / "four", "--devices", "4", llama_cpp=True)}
    with ctrl_c_at(3):
        codes["4 stopped"] = _compress(root, root / "resumed", "--devices", "4")
    codes["2 resumed"] = _compress(root, root / "resumed", "--devices", "2",
                                   "--resume")
    one = _weights(root / "one")
    emit({
        "jax_devices": len(keras.distribution.list_devices()),
        "codes": codes,
        "runs": {name: _run(root / name) for name in ("one", "four", "resumed")},
        "placed": PLACED,
        "trained_vs_initial": _difference(
            one, _weights(root / "one", "initial_student.keras")),
        "four_vs_one": _difference(one, _weights(root / "four")),
        "resumed_vs_one": _difference(one, _weights(root / "resumed")),
        "distribution_left_set": keras.distribution.distribution() is not None,
    })


if __name__ == "__main__":
    main()
