"""Distiller.fit on one device and inside MirroredStrategy (TensorFlow).

The strategy runs over 2 logical CPUs.

Prints, per family, how far fit moved the student and the largest difference
of the mirrored student from the one-device student.
"""

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu,
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

from common import CONFIGS  # noqa: E402
from common import build_pair  # noqa: E402
from common import distill  # noqa: E402
from common import emit  # noqa: E402
from common import host  # noqa: E402
from common import max_diff  # noqa: E402
from common import teacher_weights  # noqa: E402

from keras_guide.distribution import make_distribution  # noqa: E402


def main():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    result = {"devices": devices}
    for family in CONFIGS:
        weights = teacher_weights(family)
        initial = host(build_pair(family, weights)[1])
        single, single_loss = distill(family, weights)
        expected = host(single.student)
        strategy = make_distribution("data", devices=devices)
        with strategy.scope():
            mirrored, mirrored_loss = distill(family, weights)
        result[family] = {
            "strategy": type(strategy).__name__,
            "replicas": strategy.num_replicas_in_sync,
            "mirrored_variables": sum(
                type(w.value).__name__ == "MirroredVariable"
                for w in mirrored.student.weights
            ),
            "moved": max_diff(initial, expected),
            "losses": [single_loss, mirrored_loss],
            "mirrored_diff": max_diff(expected, host(mirrored.student)),
        }
    emit(result)


if __name__ == "__main__":
    main()
