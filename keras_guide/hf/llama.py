"""KerasHub Llama and Llama 3 backbones as `transformers`' `LlamaForCausalLM`.

Both rotate query/key halves `(i, i + ℓ/2)`, so the weights go across in the
original layout (no row permutation, unlike llama.cpp's); a Keras kernel
`(in, out)` is a PyTorch weight `(out, in)` transposed. KerasHub's linear
RoPE scaling (`rope_position_scaling_factor`) is `transformers`' `linear`
rope type, its Llama 3.1 frequency adjustment the `llama3` type.
"""

# transformers' MLP projection → KerasHub's Llama dense layer.
_MLP = {
    "gate_proj": "feedforward_gate_dense",
    "up_proj": "feedforward_intermediate_dense",
    "down_proj": "feedforward_output_dense",
}


def check_heads(backbone, family="Llama", why="its head width is hidden_dim / heads"):
    """Refuses a backbone whose width does not split into its query heads.

    Shared with `keras_guide.hf.gemma3`.

    Args:
        backbone: a KerasHub backbone (`hidden_dim`, `num_query_heads`).
        family: str. The `transformers` family named. Defaults to "Llama".
        why: str. Why that family needs it, for the message.

    Raises:
        ValueError: `hidden_dim` is not a multiple of `num_query_heads`.
    """
    d, h = backbone.hidden_dim, backbone.num_query_heads
    if d % h:
        raise ValueError(
            f"transformers' {family} needs hidden_dim divisible by the query heads "
            f"({why}); save this model as a KerasHub preset instead. Received: "
            f"hidden_dim={d}, num_query_heads={h}"
        )


def mlp_tensors(read, keras_block, hf_block, layers):
    """Yields a block's gated MLP as `transformers`' `mlp.*_proj.weight`.

    Shared with `keras_guide.hf.gemma3`.

    Args:
        read: callable. `read(keras weight path)` → the weight as a NumPy
            array.
        keras_block: str. The block's Keras weight path prefix
            (`transformer_layer_0/`).
        hf_block: str. The block's `transformers` name prefix
            (`model.layers.0.`).
        layers: dict. `{"gate_proj", "up_proj", "down_proj"}` → the Keras
            dense layer of each.
    """
    for name, keras_name in layers.items():
        # A Keras kernel (in, out) is a PyTorch weight (out, in).
        kernel = read(keras_block + keras_name + "/kernel")
        yield hf_block + f"mlp.{name}.weight", kernel.T


def config(backbone, context_length):
    """The `config.json` fields of a Llama backbone (token ids aside)."""
    check_heads(backbone)
    rope = {"rope_type": "default", "rope_theta": float(backbone.rope_max_wavelength)}
    factor = float(getattr(backbone, "rope_position_scaling_factor", 1.0) or 1.0)
    adjustment = getattr(backbone, "rope_frequency_adjustment_factor", None)
    if adjustment is not None:
        if factor != 1.0:
            raise ValueError(
                "The model combines linear RoPE scaling with Llama 3.1's "
                "frequency adjustment, which transformers' Llama cannot hold. "
                f"Received: rope_position_scaling_factor={factor}"
            )
        rope.update(
            rope_type="llama3",
            factor=float(adjustment),
            low_freq_factor=float(backbone.rope_low_freq_factor),
            high_freq_factor=float(backbone.rope_high_freq_factor),
            original_max_position_embeddings=int(
                backbone.rope_pretraining_sequence_length
            ),
        )
    elif factor != 1.0:
        rope.update(rope_type="linear", factor=factor)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(backbone.vocabulary_size),
        "hidden_size": int(backbone.hidden_dim),
        "intermediate_size": int(backbone.intermediate_dim),
        "num_hidden_layers": int(backbone.num_layers),
        "num_attention_heads": int(backbone.num_query_heads),
        "num_key_value_heads": int(backbone.num_key_value_heads),
        "head_dim": int(backbone.hidden_dim // backbone.num_query_heads),
        "hidden_act": "silu",
        "max_position_embeddings": int(context_length),
        "rms_norm_eps": float(backbone.layer_norm_epsilon),
        "rope_parameters": rope,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": bool(backbone.token_embedding.tie_weights),
        "use_cache": True,
    }


def tensors(read, backbone):
    """Yields `(transformers name, float32 array)` for every weight.

    Args:
        read: `read(keras weight path)` → the weight as a NumPy array.
        backbone: the Llama backbone.
    """
    d = backbone.hidden_dim
    yield "model.embed_tokens.weight", read("token_embedding/embeddings")
    for i in range(backbone.num_layers):
        k, t = f"transformer_layer_{i}/", f"model.layers.{i}."
        a = k + "self_attention/"
        yield t + "input_layernorm.weight", read(k + "self_attention_layernorm/scale")
        yield (
            t + "post_attention_layernorm.weight",
            read(k + "feedforward_layernorm/scale"),
        )
        for name in ("query", "key", "value"):
            # Keras (d, heads, ℓ) → (heads·ℓ, d).
            yield (
                t + f"self_attn.{name[0]}_proj.weight",
                read(a + name + "/kernel").reshape(d, -1).T,
            )
        # Keras (heads, ℓ, d) → (d, heads·ℓ).
        yield (
            t + "self_attn.o_proj.weight",
            read(a + "attention_output/kernel").reshape(-1, d).T,
        )
        yield from mlp_tensors(read, k, t, _MLP)
    yield "model.norm.weight", read("sequence_output_layernorm/scale")
    if not backbone.token_embedding.tie_weights:
        yield "lm_head.weight", read("token_embedding/reverse_embeddings").T
