"""guide() on one device, under DataParallel and under ModelParallel (2 devices).

Prints, per family: the largest student difference against the one-device
guide and the students' shardings against the layout map; then the host bytes
that a Gram pass over a sharded, vocabulary-large teacher table allocates,
through `row_chunks` and through `pca_projection`.
"""

import tracemalloc

import keras
import numpy as np
from common import CONFIGS
from common import build_pair
from common import emit
from common import host
from common import max_diff
from common import teacher_weights

from keras_guide._host import row_chunks
from keras_guide.distribution import sharding_layouts
from keras_guide.initializers import pca_projection
from keras_guide.initializers.projection import gram_matrix


def spec_matches(variable, layouts):
    layout = layouts[variable.path]
    want = tuple(layout.axes) if layout is not None else (None,) * len(variable.shape)
    got = tuple(variable.value.sharding.spec)
    got = got + (None,) * (len(want) - len(got))
    return got == want


def pca_host_bytes(mesh):
    """Peak traced host bytes of the PCA of a vocabulary-sharded (V, d) table."""
    import keras_hub

    config = dict(
        vocabulary_size=32768,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=8,
    )
    with keras.StatelessScope():
        plan = keras_hub.models.LlamaBackbone(**config)
    distribution = keras.distribution.ModelParallel(
        layout_map=sharding_layouts(plan, plan, mesh), batch_dim_name="batch"
    )
    with distribution.scope():
        teacher = keras_hub.models.LlamaBackbone(**config)
    table = teacher.get_layer("token_embedding").embeddings
    table_bytes = int(np.prod(table.shape)) * 4
    list(row_chunks(table, 4096))  # compiles the slices outside the measurement
    tracemalloc.start()
    gram = np.zeros((16, 16))
    for chunk in row_chunks(table, 4096):
        gram += chunk.T.astype(np.float64) @ chunk
    _, rows_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows = {
        "table_bytes": table_bytes,
        "peak_bytes": rows_peak,
        "host_copy_kept_on_teacher": getattr(table.value, "_npy_value", None)
        is not None,
    }
    tracemalloc.start()
    pca_projection(table, 8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pca_kept = getattr(table.value, "_npy_value", None) is not None
    reference = gram_matrix(
        np.asarray(table.numpy()), chunk_rows=4096, precision="float64"
    )[0]
    rows["gram_max_diff"] = float(np.max(np.abs(reference - gram)))
    pca = {
        "table_bytes": table_bytes,
        "peak_bytes": peak,
        "sharded": not table.value.sharding.is_fully_replicated,
        "host_copy_kept_on_teacher": pca_kept,
    }
    return pca, rows


def main():
    devices = keras.distribution.list_devices()
    result = {"devices": len(devices)}
    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), devices)
    for family in CONFIGS:
        weights = teacher_weights(family)
        _, reference, _ = build_pair(family, weights, task=False)
        expected = host(reference)
        with keras.distribution.DataParallel(devices=devices).scope():
            _, student, _ = build_pair(family, weights, task=False)
        data = max_diff(expected, host(student))
        with keras.StatelessScope():
            plan_t, plan_s, _ = build_pair(family, weights, task=False)
        layouts = sharding_layouts(plan_t, plan_s, mesh)
        with keras.distribution.ModelParallel(
            layout_map=layouts, batch_dim_name="batch"
        ).scope():
            teacher, student, _ = build_pair(family, weights, task=False)
        result[family] = {
            "data_parallel_diff": data,
            "model_parallel_diff": max_diff(expected, host(student)),
            "sharded_student_weights": sum(
                not w.value.sharding.is_fully_replicated for w in student.weights
            ),
            "layout_mismatches": [
                w.path
                for w in teacher.weights + student.weights
                if not spec_matches(w, layouts)
            ],
        }
    result["pca"], result["row_chunks"] = pca_host_bytes(mesh)
    emit(result)


if __name__ == "__main__":
    main()
