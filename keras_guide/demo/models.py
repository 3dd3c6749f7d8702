"""The demo's models: the shipped teacher and the students, from explicit configs.

All are KerasHub GPT-2 causal LMs (`GPT2Backbone` in a `GPT2CausalLM` without
preprocessor) over the demo's 2048-token BPE. The teacher's weights are shipped
in `assets/` and reproduced by `scripts/train_demo_teacher.py`.
"""

import json
import os

from keras_guide.demo.tokenizer import ASSETS_DIR
from keras_guide.workflows import checkpoint

TEACHER_CONFIG_FILE = "teacher_config.json"
TEACHER_WEIGHTS_FILE = "teacher.weights.npz"

TEACHER_CONFIG = {
    "vocabulary_size": 2048,
    "num_layers": 4,
    "num_heads": 4,
    "hidden_dim": 256,
    "intermediate_dim": 1024,
    "dropout": 0.1,
    "max_sequence_length": 128,
}

STUDENT_CONFIG = {
    "vocabulary_size": 2048,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 128,
    "intermediate_dim": 512,
    "dropout": 0.0,
    "max_sequence_length": 128,
}


def _keras_hub():
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            "The demo needs KerasHub. Install it with "
            "`pip install keras-guide[demo]` or `pip install keras-hub`."
        ) from error
    return keras_hub


def build_causal_lm(config, seed=None):
    """Returns a built `GPT2CausalLM` (no preprocessor) for a backbone `config`.

    Args:
        config: dict of `keras_hub.models.GPT2Backbone` arguments.
        seed: int or None; seeds Keras' global generator before the weights
            are created, so the same seed gives the same initial weights.
    """
    import keras

    keras_hub = _keras_hub()
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    backbone = keras_hub.models.GPT2Backbone(**config)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def round_to_float16(model):
    """Rounds `model`'s weights to float16 values in place (how they are shipped)."""
    import numpy as np

    for variable in model.weights:
        value = np.asarray(
            variable.numpy() if hasattr(variable, "numpy") else variable.value
        )
        variable.assign(value.astype(np.float16).astype(value.dtype))


def save_teacher(model, directory=ASSETS_DIR, extra=None):
    """Writes the teacher's weights (float16) and config (plus `extra` metadata)."""
    os.makedirs(directory, exist_ok=True)
    checkpoint.save_variables(
        model.weights,
        os.path.join(directory, TEACHER_WEIGHTS_FILE),
        dtype="float16",
        compressed=True,
    )
    config = {"backbone": _backbone_config(model), **(extra or {})}
    with open(os.path.join(directory, TEACHER_CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)


def _backbone_config(model):
    config = model.backbone.get_config()
    return {k: config[k] for k in TEACHER_CONFIG}


def teacher_metadata(directory=ASSETS_DIR):
    """Returns the shipped teacher's config JSON (backbone config, training record)."""
    with open(os.path.join(directory, TEACHER_CONFIG_FILE)) as f:
        return json.load(f)


def has_teacher(directory=ASSETS_DIR):
    return os.path.exists(os.path.join(directory, TEACHER_WEIGHTS_FILE))


def load_teacher(directory=ASSETS_DIR):
    """Returns the shipped teacher, a trained `GPT2CausalLM`.

    Raises:
        FileNotFoundError: if the weights are missing (train them with
            `python scripts/train_demo_teacher.py`).
    """
    path = os.path.join(directory, TEACHER_WEIGHTS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No demo teacher at {path}. Train it with "
            "`python scripts/train_demo_teacher.py`."
        )
    model = build_causal_lm(teacher_metadata(directory)["backbone"])
    checkpoint.load_variables(model.weights, path)
    model.trainable = False
    return model
