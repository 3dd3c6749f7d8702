"""KerasHub's text-only Gemma 3 as `transformers`' `Gemma3ForCausalLM`.

Both multiply by `1 + scale` in every RMSNorm (q/k norms included), so the
gains go across as stored (llama.cpp's files hold `1 + scale` instead); both
scale embeddings by `√d` and rotate query/key halves. What a block does is
read off the block itself: whether it is a sliding-window block (KerasHub:
five, then a global one, counted from the first block, which
`transformers`' `layer_types` states block by block), its RoPE wavelength
and scaling, and the query scale (`query_pre_attn_scalar` is `1 / scale²`;
KerasHub 0.32's blocks normalize by the head width whatever the backbone's
`query_head_dim_normalize` says, see `keras_guide.gguf.gemma3`).
"""

from keras_guide.gguf.gemma3 import keras_query_scale
from keras_guide.gguf.gemma3 import text_only_unsupported
from keras_guide.hf.llama import check_heads
from keras_guide.hf.llama import mlp_tensors

# transformers' MLP projection → KerasHub's Gemma 3 dense layer.
_MLP = {"gate_proj": "ffw_gating", "up_proj": "ffw_gating_2", "down_proj": "ffw_linear"}


def _rope(blocks, sliding):
    """`{"rope_type", "rope_theta"[, "factor"]}` shared by these blocks."""
    chosen = [b for b in blocks if bool(b.use_sliding_window_attention) == sliding]
    if not chosen:
        # No block of this kind: transformers' own default for it.
        theta = 10_000.0 if sliding else 1_000_000.0
        return {"rope_type": "default", "rope_theta": theta}
    settings = {
        (float(b.rope_wavelength), float(b.rope_scaling_factor)) for b in chosen
    }
    if len(settings) > 1:
        kind = "sliding-window" if sliding else "global"
        raise ValueError(
            f"The model's {kind} blocks use different RoPE settings {sorted(settings)}"
            "; transformers' Gemma 3 has one per kind of block."
        )
    theta, factor = settings.pop()
    if factor == 1.0:
        return {"rope_type": "default", "rope_theta": theta}
    return {"rope_type": "linear", "rope_theta": theta, "factor": factor}


def config(backbone, context_length):
    """The `config.json` fields of a text-only `Gemma3Backbone` (token ids
    aside).

    Raises:
        ValueError: what `Gemma3ForCausalLM` does not have (the message names
            it).
    """
    keras_config = backbone.get_config()
    found = text_only_unsupported(keras_config)
    if found:
        raise ValueError(
            f"This Gemma 3 model uses {found}, which transformers' text-only "
            "Gemma3ForCausalLM does not have; save it as a KerasHub preset instead."
        )
    check_heads(backbone, "Gemma 3", "whatever the head width")
    d, h = backbone.hidden_dim, backbone.num_query_heads
    blocks = backbone.transformer_layers
    scalar = 1.0 / keras_query_scale(backbone) ** 2
    windows = {int(b.sliding_window_size) for b in blocks}
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": int(backbone.vocabulary_size),
        "hidden_size": int(d),
        "intermediate_size": int(backbone.intermediate_dim),
        "num_hidden_layers": int(backbone.num_layers),
        "num_attention_heads": int(h),
        "num_key_value_heads": int(backbone.num_key_value_heads),
        "head_dim": int(backbone.head_dim),
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": int(context_length),
        "rms_norm_eps": float(backbone.layer_norm_epsilon),
        "query_pre_attn_scalar": round(scalar)
        if abs(scalar - round(scalar)) < 1e-6
        else scalar,
        "sliding_window": max(windows),
        "layer_types": [
            "sliding_attention" if b.use_sliding_window_attention else "full_attention"
            for b in blocks
        ],
        "rope_parameters": {
            "sliding_attention": _rope(blocks, True),
            "full_attention": _rope(blocks, False),
        },
        "final_logit_softcapping": keras_config.get("final_logit_soft_cap"),
        "attn_logit_softcapping": keras_config.get("attention_logit_soft_cap"),
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_bidirectional_attention": False,
        "tie_word_embeddings": True,
        "use_cache": True,
    }


def tensors(read, backbone):
    """Yields `(transformers name, float32 array)` for every weight.

    Args:
        read: `read(keras weight path)` → the weight as a NumPy array.
        backbone: the `Gemma3Backbone`.
    """
    d = backbone.hidden_dim
    yield "model.embed_tokens.weight", read("token_embedding/embeddings")
    for i in range(backbone.num_layers):
        k, t = f"decoder_block_{i}/", f"model.layers.{i}."
        for keras_name, name in (
            ("pre_attention_norm", "input_layernorm"),
            ("post_attention_norm", "post_attention_layernorm"),
            ("pre_ffw_norm", "pre_feedforward_layernorm"),
            ("post_ffw_norm", "post_feedforward_layernorm"),
            ("attention/query_norm", "self_attn.q_norm"),
            ("attention/key_norm", "self_attn.k_norm"),
        ):
            yield t + name + ".weight", read(k + keras_name + "/scale")
        for name in ("query", "key", "value"):
            # Keras (heads, d, ℓ) → (heads·ℓ, d).
            kernel = read(k + f"attention/{name}/kernel")
            yield (
                t + f"self_attn.{name[0]}_proj.weight",
                kernel.transpose(0, 2, 1).reshape(-1, d),
            )
        # Keras (heads, ℓ, d) → (d, heads·ℓ).
        kernel = read(k + "attention/attention_output/kernel")
        yield (t + "self_attn.o_proj.weight", kernel.transpose(2, 0, 1).reshape(d, -1))
        yield from mlp_tensors(read, k, t, _MLP)
    yield "model.norm.weight", read("final_normalization/scale")
