"""Tiny teachers of every supported family and the checks they share."""

import dataclasses
import re

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
    # Axis of the MLP output kernel that indexes neurons.
    neuron_axis: int = 0
    # The query kernel (path in a block) and its query-heads axis.
    query: tuple = ("self_attention/query/kernel", 1)
    # The projection `projection="auto"` gives (a full-width student is exact
    # with it and `norm="fold"`).
    exact_kind: str = "pca"
    # Norms on what a branch adds to the stream (Gemma 2/3): a narrower
    # student's branches are exact for a selecting `M` on the kept coordinates.
    post_branch_norms: bool = False
    segments: bool = False


FAMILIES = {
    "gpt2": Family(
        "gpt2",
        "GPT2Backbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=12,
        ),
        dict(
            hidden_dim=8,
            num_heads=2,
            intermediate_dim=16,
            num_layers=1,
            max_sequence_length=10,
        ),
        "transformer_layer_{}",
        (
            "self_attention/attention_output/kernel",
            "self_attention/attention_output/bias",
        ),
        ("feedforward_output_dense/kernel", "feedforward_output_dense/bias"),
        exact_kind="pca_mean_preserving",
    ),
    "llama": Family(
        "llama",
        "LlamaBackbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=8,
            num_key_value_heads=2,
            hidden_dim=32,
            intermediate_dim=24,
        ),
        dict(
            hidden_dim=16,
            num_heads=4,
            num_key_value_heads=2,
            intermediate_dim=12,
            num_layers=1,
        ),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
    ),
    "gemma": Family(
        "gemma",
        "GemmaBackbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=48,
            head_dim=4,
        ),
        dict(
            hidden_dim=8,
            num_heads=2,
            num_key_value_heads=1,
            intermediate_dim=16,
            num_layers=1,
        ),
        "decoder_block_{}",
        ("attention/attention_output/kernel",),
        ("ffw_linear/kernel",),
        query=("attention/query/kernel", 0),
    ),
    "qwen": Family(
        "qwen",
        "QwenBackbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=8,
            num_key_value_heads=2,
            hidden_dim=32,
            intermediate_dim=24,
        ),
        dict(
            hidden_dim=16,
            num_heads=4,
            num_key_value_heads=2,
            intermediate_dim=12,
            num_layers=1,
        ),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
    ),
    "qwen3": Family(
        "qwen3",
        "Qwen3Backbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            hidden_dim=16,
            intermediate_dim=24,
        ),
        dict(
            hidden_dim=8,
            num_heads=2,
            num_key_value_heads=1,
            intermediate_dim=12,
            num_layers=1,
        ),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
    ),
    # Gemma 2: post-branch norms, soft caps small enough to bend the logits,
    # sliding-window layers (every other one) narrower than the sequence. A
    # post-branch norm of a narrower student is exact only as its ε → 0 (it
    # normalizes branch outputs whose mean square is not ≫ 1e-6): ε is tiny.
    "gemma2": Family(
        "gemma2",
        "GemmaBackbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=48,
            head_dim=4,
            use_post_attention_norm=True,
            use_post_ffw_norm=True,
            attention_logit_soft_cap=5.0,
            final_logit_soft_cap=3.0,
            use_sliding_window_attention=True,
            sliding_window_size=4,
            layer_norm_epsilon=1e-12,
        ),
        dict(
            hidden_dim=8,
            num_heads=2,
            num_key_value_heads=1,
            intermediate_dim=16,
            num_layers=1,
        ),
        "decoder_block_{}",
        ("attention/attention_output/kernel",),
        ("ffw_linear/kernel",),
        query=("attention/query/kernel", 0),
        exact_kind="select",
        post_branch_norms=True,
    ),
    # Gemma 3: six blocks, so five local (sliding-window) and one global.
    "gemma3": Family(
        "gemma3",
        "Gemma3Backbone",
        dict(
            vocabulary_size=64,
            image_size=16,
            num_layers=6,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=24,
            head_dim=4,
            use_post_attention_norm=True,
            use_post_ffw_norm=True,
            use_sliding_window_attention=True,
            sliding_window_size=4,
            layer_norm_epsilon=1e-12,
        ),
        dict(
            hidden_dim=8,
            num_heads=2,
            num_key_value_heads=1,
            intermediate_dim=12,
            num_layers=1,
        ),
        "decoder_block_{}",
        ("attention/attention_output/kernel",),
        ("ffw_linear/kernel",),
        query=("attention/query/kernel", 0),
        exact_kind="select",
        post_branch_norms=True,
    ),
    "mistral": Family(
        "mistral",
        "MistralBackbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=8,
            num_key_value_heads=2,
            hidden_dim=32,
            intermediate_dim=24,
            sliding_window=4,
        ),
        dict(
            hidden_dim=16,
            num_heads=4,
            num_key_value_heads=2,
            intermediate_dim=12,
            num_layers=1,
        ),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
    ),
    "phi3": Family(
        "phi3",
        "Phi3Backbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=8,
            num_key_value_heads=2,
            hidden_dim=32,
            intermediate_dim=24,
        ),
        dict(
            hidden_dim=16,
            num_heads=4,
            num_key_value_heads=2,
            intermediate_dim=12,
            num_layers=1,
        ),
        "transformer_layer_{}",
        ("attention/attention_output/kernel",),
        ("feedforward_output_dense/kernel",),
        query=("attention/query/kernel", 1),
    ),
    "mixtral": Family(
        "mixtral",
        "MixtralBackbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_query_heads=8,
            num_key_value_heads=2,
            hidden_dim=32,
            intermediate_dim=24,
            num_experts=4,
            top_k=2,
        ),
        dict(
            hidden_dim=16,
            num_heads=4,
            num_key_value_heads=2,
            intermediate_dim=12,
            num_layers=1,
        ),
        "transformer_layer_{}",
        ("self_attention/attention_output/kernel",),
        ("mixtral_sparse_moe_block/experts/expert_feedforward_output_dense",),
        neuron_axis=1,
    ),
    **{
        name: Family(
            name,
            backbone,
            dict(
                vocabulary_size=64,
                num_layers=2,
                num_heads=4,
                hidden_dim=16,
                intermediate_dim=32,
                max_sequence_length=12,
            ),
            dict(
                hidden_dim=8,
                num_heads=2,
                intermediate_dim=16,
                num_layers=1,
                max_sequence_length=10,
            ),
            "transformer_layer_{}",
            (
                "self_attention_layer/attention_output/kernel",
                "self_attention_layer/attention_output/bias",
            ),
            ("feedforward_output_dense/kernel", "feedforward_output_dense/bias"),
            query=("self_attention_layer/query/kernel", 1),
            exact_kind="select",
            segments=name == "bert",  # BERT alone takes segment ids
        )
        # Post-norm encoders with BERT's layer names and the same tiny sizes.
        for name, backbone in (
            ("bert", "BertBackbone"),
            ("roberta", "RobertaBackbone"),
            ("xlm_roberta", "XLMRobertaBackbone"),
            ("distil_bert", "DistilBertBackbone"),
        )
    },
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
            base = 0.0 if family.name.startswith("gemma") else 1.0
            w.assign((base + 0.3 * rng.normal(size=w.shape)).astype(w.dtype))
        elif name in ("beta", "bias"):
            w.assign((0.1 * rng.normal(size=w.shape)).astype(w.dtype))
    if final_gain_one:
        for w in teacher.weights:
            if w.path in (
                "layer_norm/gamma",
                "sequence_output_layernorm/scale",
            ) and family.name.startswith("qwen"):
                w.assign(np.ones(w.shape, w.dtype))
            if w.path in ("layer_norm/gamma",):
                w.assign(np.ones(w.shape, w.dtype))
            if w.path == "final_normalization/scale":
                w.assign(np.zeros(w.shape, w.dtype))
    return teacher


def inputs(family, batch=2, seq=SEQ, seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(
            0, family.config["vocabulary_size"], (batch, seq)
        ).astype("int32"),
        "padding_mask": np.ones((batch, seq), "int32"),
    }
    if family.segments:
        x["segment_ids"] = rng.integers(0, 2, (batch, seq)).astype("int32")
    return x


def logits(backbone, x):
    out = backbone(x)
    hidden = out["sequence_output"] if isinstance(out, dict) else out
    return keras.ops.convert_to_numpy(
        backbone.token_embedding(hidden, reverse=True)
    ).astype(np.float64)


# Layers KerasHub leaves unnamed get a process-wide number (Mixtral's MoE
# block): the same weight of two models differs only in it.
_AUTO_NUMBERED = re.compile(r"(mixtral_sparse_moe_block)_\d+/")


def canonical(path):
    """A weight's path without the number Keras gives unnamed layers."""
    return _AUTO_NUMBERED.sub(r"\1/", path)


def weights(model):
    """Every weight of `model` as NumPy, by canonical path."""
    return {
        canonical(w.path): keras.ops.convert_to_numpy(w).copy() for w in model.weights
    }


def clone(backbone):
    copy = build_student(backbone, name=backbone.name + "_copy")
    copy.set_weights(backbone.get_weights())
    return copy


def zero(backbone, paths):
    paths = {canonical(path) for path in paths}
    for w in backbone.weights:
        if canonical(w.path) in paths:
            w.assign(np.zeros(w.shape, w.dtype))


def keep_only(backbone, path, axis, kept):
    """Zeroes the slices of `path` along `axis` that are not in `kept`."""
    for w in backbone.weights:
        if canonical(w.path) == canonical(path):
            value = keras.ops.convert_to_numpy(w).copy()
            mask = np.ones(value.shape[axis], bool)
            mask[np.asarray(kept)] = False
            index = [slice(None)] * value.ndim
            index[axis] = mask
            value[tuple(index)] = 0
            w.assign(value)


def numpy_teacher(family, seed=0):
    """A teacher whose every weight comes from a NumPy generator, so that it is
    the same on every backend (Keras' own initializers differ between them)."""
    import keras_hub

    teacher = getattr(keras_hub.models, family.backbone)(**family.config)
    rng = np.random.default_rng(seed)
    for w in teacher.weights:
        name = w.path.rsplit("/", 1)[-1]
        base = (
            1.0
            if name in ("gamma", "scale") and not family.name.startswith("gemma")
            else 0.0
        )
        w.assign((base + 0.3 * rng.normal(size=w.shape)).astype(w.dtype))
    return teacher


def tied_llama(seed=0):
    """A tiny Llama teacher with a tied head and gains far from one."""
    family = FAMILIES["llama"]
    import keras_hub

    keras.utils.set_random_seed(seed)
    teacher = keras_hub.models.LlamaBackbone(**family.config, tie_word_embeddings=True)
    rng = np.random.default_rng(seed)
    for w in teacher.weights:
        if w.path.endswith("scale"):
            # Gains far from one (a real model's final gain runs from -2 to 3).
            w.assign((1.0 + 1.2 * rng.normal(size=w.shape)).astype(w.dtype))
    return family, teacher
