"""Tiny teachers of every supported family and the checks they share."""

import dataclasses

import keras
import numpy as np

from keras_guide.guide import build_student

SEQ = 8


@dataclasses.dataclass
class Family:
    name: str
    backbone: str
    config: dict
    narrow: dict
    block: str
    attention_output: tuple
    mlp_output: tuple
    # Axis of the attention output kernel that indexes query heads.
    head_axis: int = 0


FAMILIES = {
    "gpt2": Family(
        "gpt2", "GPT2Backbone",
        dict(vocabulary_size=64, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=32, max_sequence_length=12),
        dict(hidden_dim=8, num_heads=2, intermediate_dim=16, num_layers=1, max_sequence_length=10),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel", "self_attention/attention_output/bias"),
        ("feedforward_output_dense/kernel", "feedforward_output_dense/bias"),
    ),
    "llama": Family(
        "llama", "LlamaBackbone",
        dict(vocabulary_size=64, num_layers=2, num_query_heads=8, num_key_value_heads=2, hidden_dim=32, intermediate_dim=24),
        dict(hidden_dim=16, num_heads=4, num_key_value_heads=2, intermediate_dim=12, num_layers=1),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
    ),
    "gemma": Family(
        "gemma", "GemmaBackbone",
        dict(vocabulary_size=64, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=16, intermediate_dim=48, head_dim=4),
        dict(hidden_dim=8, num_heads=2, num_key_value_heads=1, intermediate_dim=16, num_layers=1),
        "decoder_block_{}",
        ("attention/attention_output/kernel",),
        ("ffw_linear/kernel",),
    ),
    "qwen": Family(
        "qwen", "QwenBackbone",
        dict(vocabulary_size=64, num_layers=2, num_query_heads=8, num_key_value_heads=2, hidden_dim=32, intermediate_dim=24),
        dict(hidden_dim=16, num_heads=4, num_key_value_heads=2, intermediate_dim=12, num_layers=1),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
    ),
    "qwen3": Family(
        "qwen3", "Qwen3Backbone",
        dict(vocabulary_size=64, num_layers=2, num_query_heads=4, num_key_value_heads=2, head_dim=8, hidden_dim=16, intermediate_dim=24),
        dict(hidden_dim=8, num_heads=2, num_key_value_heads=1, intermediate_dim=12, num_layers=1),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
    ),
    "bert": Family(
        "bert", "BertBackbone",
        dict(vocabulary_size=64, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=32, max_sequence_length=12),
        dict(hidden_dim=8, num_heads=2, intermediate_dim=16, num_layers=1, max_sequence_length=10),
        "transformer_layer_{}",
        ("self_attention_layer/attention_output/kernel", "self_attention_layer/attention_output/bias"),
        ("feedforward_output_dense/kernel", "feedforward_output_dense/bias"),
    ),
}


def make_teacher(family, seed=0, final_gain_one=True):
    """A tiny teacher with non-trivial norms and biases (random gains, shifts)."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    teacher = getattr(keras_hub.models, family.backbone)(**family.config)
    rng = np.random.default_rng(seed)
    for w in teacher.weights:
        name = w.path.rsplit("/", 1)[-1]
        if name in ("gamma", "scale"):
            base = 0.0 if family.name == "gemma" else 1.0
            w.assign((base + 0.3 * rng.normal(size=w.shape)).astype(w.dtype))
        elif name in ("beta", "bias"):
            w.assign((0.1 * rng.normal(size=w.shape)).astype(w.dtype))
    if final_gain_one:
        for w in teacher.weights:
            if w.path in ("layer_norm/gamma", "sequence_output_layernorm/scale") and family.name.startswith("qwen"):
                w.assign(np.ones(w.shape, w.dtype))
            if w.path in ("layer_norm/gamma",):
                w.assign(np.ones(w.shape, w.dtype))
            if w.path == "final_normalization/scale":
                w.assign(np.zeros(w.shape, w.dtype))
    return teacher


def inputs(family, batch=2, seq=SEQ, seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(0, family.config["vocabulary_size"], (batch, seq)).astype("int32"),
        "padding_mask": np.ones((batch, seq), "int32"),
    }
    if family.name == "bert":
        x["segment_ids"] = rng.integers(0, 2, (batch, seq)).astype("int32")
    return x


def logits(backbone, x):
    out = backbone(x)
    hidden = out["sequence_output"] if isinstance(out, dict) else out
    return keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True)).astype(np.float64)


def weights(model):
    return {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}


def clone(backbone):
    copy = build_student(backbone, name=backbone.name + "_copy")
    copy.set_weights(backbone.get_weights())
    return copy


def zero(backbone, paths):
    for w in backbone.weights:
        if w.path in paths:
            w.assign(np.zeros(w.shape, w.dtype))


def keep_only(backbone, path, axis, kept):
    """Zeroes the slices of `path` along `axis` that are not in `kept`."""
    for w in backbone.weights:
        if w.path == path:
            value = keras.ops.convert_to_numpy(w).copy()
            mask = np.ones(value.shape[axis], bool)
            mask[np.asarray(kept)] = False
            index = [slice(None)] * value.ndim
            index[axis] = mask
            value[tuple(index)] = 0
            w.assign(value)
