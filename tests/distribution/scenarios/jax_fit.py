"""Distiller.fit on one device, under DataParallel and under ModelParallel (2 devices).

Prints, per family: how far fit moved the student, the largest difference of
the data- and model-parallel students from the one-device student, and every
weight (teacher, student, optimizer slot) whose sharding differs from the
layout map.
"""

import keras
from common import CONFIGS
from common import build_pair
from common import distill
from common import emit
from common import host
from common import max_diff
from common import teacher_weights

from keras_guide.distribution import make_distribution


def spec(variable):
    got = tuple(variable.value.sharding.spec)
    return got + (None,) * (len(variable.shape) - len(got))


def main():
    result = {}
    for family in CONFIGS:
        weights = teacher_weights(family)
        initial = host(build_pair(family, weights)[1])
        single, single_loss = distill(family, weights)
        expected = host(single.student)
        with make_distribution("data").scope():
            data, data_loss = distill(family, weights)
        with keras.StatelessScope():
            plan_t, plan_s, _ = build_pair(family, weights, task=False)
        distribution = make_distribution("model", plan_t, plan_s, model_parallel=2)
        layouts = distribution._layout_map
        with distribution.scope():
            model, model_loss = distill(family, weights)
        mismatches, sharded = [], 0
        for variable in model.teacher.weights + model.student.weights:
            layout = layouts[variable.path]
            want = (
                tuple(layout.axes)
                if layout is not None
                else (None,) * len(variable.shape)
            )
            sharded += any(axis is not None for axis in want)
            if spec(variable) != want:
                mismatches.append(variable.path)
        slots_sharded = sum(
            not v.value.sharding.is_fully_replicated for v in model.optimizer.variables
        )
        student_sharded = sum(
            not v.value.sharding.is_fully_replicated
            for v in model.student.trainable_weights
        )
        result[family] = {
            "moved": max_diff(initial, expected),
            "losses": [single_loss, data_loss, model_loss],
            "data_parallel_diff": max_diff(expected, host(data.student)),
            "model_parallel_diff": max_diff(expected, host(model.student)),
            "teacher_unchanged": max_diff(host(single.teacher), host(model.teacher))
            == 0.0,
            "sharded_by_layout": sharded,
            "layout_mismatches": mismatches,
            "optimizer_slots_sharded": slots_sharded,
            "student_trainable_sharded": student_sharded,
        }
    emit(result)


if __name__ == "__main__":
    main()
