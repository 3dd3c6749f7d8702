"""Tiny guided KerasHub teachers and students shared by the scenario scripts.

Each scenario runs in its own process (device flags must be set before the
backend starts) and prints one JSON line, prefixed `RESULT `, that the test
reads and asserts on.
"""

import json

import keras
import numpy as np

from keras_guide import build_student
from keras_guide import guide

CONFIGS = {
    "gpt2": (
        "GPT2CausalLM",
        "GPT2Backbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=16,
            dropout=0.0,
        ),
        dict(hidden_dim=8, num_heads=2, intermediate_dim=16),
    ),
    "llama": (
        "LlamaCausalLM",
        "LlamaBackbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
        ),
        dict(hidden_dim=8, num_heads=2, num_key_value_heads=2, intermediate_dim=16),
    ),
}
BATCH, SEQ = 4, 8


def teacher_weights(family, seed=0):
    """Host weights of a tiny teacher, built once without any distribution."""
    import keras_hub

    _, backbone, config, _ = CONFIGS[family]
    keras.utils.set_random_seed(seed)
    teacher = getattr(keras_hub.models, backbone)(**config)
    rng = np.random.default_rng(seed)
    # Non-trivial norm gains, so folding is exercised.
    return {
        w.path: (
            np.asarray(rng.uniform(0.5, 1.5, w.shape), dtype="float32")
            if w.path.endswith(("gamma", "scale"))
            else keras.ops.convert_to_numpy(w.value)
        )
        for w in teacher.weights
    }


def build_pair(family, weights, seed=1, task=True):
    """Teacher (given weights) and a narrower guided student, in the current scope."""
    import keras_hub

    lm, backbone, config, sizes = CONFIGS[family]
    teacher = getattr(keras_hub.models, backbone)(**config)
    for w in teacher.weights:
        w.assign(weights[w.path])
    keras.utils.set_random_seed(seed)
    student = build_student(teacher, **sizes)
    report = guide(teacher, student, blocks="all")
    if task:
        teacher = getattr(keras_hub.models, lm)(backbone=teacher, preprocessor=None)
        student = getattr(keras_hub.models, lm)(backbone=student, preprocessor=None)
    return teacher, student, report


def batches(count=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        tokens = rng.integers(1, 64, size=(BATCH, SEQ + 1)).astype("int32")
        mask = np.ones((BATCH, SEQ), dtype=bool)
        # Padding balanced over the two replicas' halves of each batch.
        mask[0, -2:] = False
        mask[2, -2:] = False
        # An int32 mask: Keras' TensorFlow trainer averages the first batch
        # over replicas to build the model under a strategy (AddN has no bool).
        x = {"token_ids": tokens[:, :-1], "padding_mask": mask.astype("int32")}
        out.append((x, tokens[:, 1:], mask.astype("float32")))
    return out


def host(model):
    return {
        w.path: np.asarray(keras.ops.convert_to_numpy(w.value), dtype=np.float64)
        for w in model.weights
    }


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]), initial=0.0)) for k in a)


def emit(result):
    # On a line of its own: a progress bar stopped by Ctrl-C ends without one.
    print("\nRESULT " + json.dumps(result), flush=True)


def distill(family, weights, steps=3):
    """Builds, guides and distills in the current scope; returns the Distiller."""
    from keras_guide.distillation import Distiller

    teacher, student, _ = build_pair(family, weights)
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5, momentum=0.5))
    data = batches(steps)
    x = {k: np.concatenate([b[0][k] for b in data]) for k in data[0][0]}
    y = np.concatenate([b[1] for b in data])
    w = np.concatenate([b[2] for b in data])
    history = distiller.fit(
        x, y, sample_weight=w, batch_size=BATCH, epochs=1, shuffle=False, verbose=0
    )
    return distiller, history.history["loss"][-1]
