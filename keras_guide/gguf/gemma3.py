"""GGUF `gemma3` checkpoints (text-only Gemma 3) as KerasHub `Gemma3CausalLM`.

Gemma's RMSNorms multiply by `1 + scale`; llama.cpp's converter stores
`1 + scale` itself, so every norm weight of the file (q/k norms included)
loses its `+1` here. llama.cpp rotates Gemma's query/key halves like the
original (no row permutation). KerasHub's Gemma 3 fixes the rest of the
layout: 5 sliding-window layers then 1 global one, RoPE wavelengths 10,000
(local) and 1,000,000 (global), embeddings scaled by `√d`.
"""

from keras_guide.gguf import mapping
from keras_guide.gguf.reader import GGUFError

CLASSES = {
    "llama": (
        "Gemma3Backbone",
        "Gemma3Tokenizer",
        "Gemma3CausalLMPreprocessor",
        "Gemma3CausalLM",
    ),
}

# llama.cpp scales Gemma 3 queries by 1/√(d/heads) instead of 1/√ℓ for the 27B
# model only (its `query_pre_attn_scalar`); the file does not say which.
_27B_WIDTH = 5376
_GLOBAL_WAVELENGTH = 1_000_000.0


def backbone_config(f):
    """The `Gemma3Backbone` arguments of a GGUF `gemma3` file."""
    arch = f.architecture
    hidden_dim = int(f.require(f"{arch}.embedding_length"))
    head_dim = int(f.require(f"{arch}.attention.key_length"))
    if f.get(f"{arch}.attention.value_length", head_dim) != head_dim:
        raise GGUFError(f"`{f.path}`: key and value head widths differ.")
    wavelength = float(f.get(f"{arch}.rope.freq_base", _GLOBAL_WAVELENGTH))
    if wavelength != _GLOBAL_WAVELENGTH:
        raise GGUFError(
            f"`{f.path}` has RoPE base {wavelength}; KerasHub's Gemma 3 fixes "
            f"{_GLOBAL_WAVELENGTH:.0f} for its global layers."
        )
    scaling = f.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise GGUFError(f"`{f.path}` uses RoPE scaling {scaling!r}; supported: linear.")
    window = f.get(f"{arch}.attention.sliding_window")
    return dict(
        vocabulary_size=int(f.tensor_shape("token_embd.weight")[0]),
        image_size=None,
        num_layers=int(f.require(f"{arch}.block_count")),
        num_query_heads=int(f.require(f"{arch}.attention.head_count")),
        num_key_value_heads=int(f.require(f"{arch}.attention.head_count_kv")),
        hidden_dim=hidden_dim,
        intermediate_dim=int(f.require(f"{arch}.feed_forward_length")),
        head_dim=head_dim,
        query_head_dim_normalize=hidden_dim != _27B_WIDTH,
        use_query_key_norm=True,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=f.get(f"{arch}.attn_logit_softcapping"),
        final_logit_soft_cap=f.get(f"{arch}.final_logit_softcapping"),
        use_sliding_window_attention=window is not None,
        sliding_window_size=int(window or 4096),
        global_rope_scaling_factor=float(
            f.get(f"{arch}.rope.scaling.factor", 1.0) if scaling == "linear" else 1.0
        ),
        layer_norm_epsilon=float(f.require(f"{arch}.attention.layer_norm_rms_epsilon")),
    )


def _norm(w):
    return w - 1.0  # llama.cpp stores Gemma's `1 + scale`.


def weights(f, config):
    """Yields `(keras weight path, gguf tensor name, value)` for every weight."""
    if f.has_tensor("output.weight"):
        raise GGUFError(f"`{f.path}` has an untied output head; Gemma 3 ties it.")
    d, width = config["hidden_dim"], config["head_dim"]
    h, g = config["num_query_heads"], config["num_key_value_heads"]

    def heads_first(n):
        # (n·ℓ, d) rows → Keras (n, d, ℓ).
        return lambda w: w.reshape(n, width, d).transpose(0, 2, 1)

    top = [
        ("token_embedding/embeddings", "token_embd.weight", mapping.same),
        ("final_normalization/scale", "output_norm.weight", _norm),
    ]
    norms = [
        ("pre_attention_norm", "attn_norm"),
        ("post_attention_norm", "post_attention_norm"),
        ("pre_ffw_norm", "ffn_norm"),
        ("post_ffw_norm", "post_ffw_norm"),
        ("attention/query_norm", "attn_q_norm"),
        ("attention/key_norm", "attn_k_norm"),
    ]
    block = [(k + "/scale", name + ".weight", _norm) for k, name in norms] + [
        ("attention/query/kernel", "attn_q.weight", heads_first(h)),
        ("attention/key/kernel", "attn_k.weight", heads_first(g)),
        ("attention/value/kernel", "attn_v.weight", heads_first(g)),
        ("attention/attention_output/kernel", "attn_output.weight",
         lambda w: w.reshape(d, h, width).transpose(1, 2, 0)),
        ("ffw_gating/kernel", "ffn_gate.weight", mapping.transpose),
        ("ffw_gating_2/kernel", "ffn_up.weight", mapping.transpose),
        ("ffw_linear/kernel", "ffn_down.weight", mapping.transpose),
    ]
    return mapping.weights(
        f, top, block, config["num_layers"], keras_block="decoder_block_{}/"
    )
