"""GGUF `llama` checkpoints (Llama 1-3, SmolLM/SmolLM2, …) as KerasHub Llama models.

llama.cpp stores the query and key rows of every head permuted for its own
rotary layout: it rotates adjacent pairs `(2i, 2i + 1)`, where the original
checkpoint (and KerasHub) rotate `(i, i + ℓ/2)`. Its converter reorders each
head's rows from `(2, ℓ/2)` to `(ℓ/2, 2)`; `unpermute_rows` undoes it.
Loaded without that, SmolLM2-135M's perplexity on English text is about ten
times higher; the tests check the result against a NumPy forward pass that
rotates pairs the way llama.cpp does, on the file's own layout.
"""

from keras_guide.gguf import hyperparameters
from keras_guide.gguf import mapping
from keras_guide.gguf.reader import GGUFError

# KerasHub Llama classes by the file's tokenizer model: byte-level BPE (Llama 3,
# SmolLM) or SentencePiece (Llama 1/2).
CLASSES = {
    "gpt2": (
        "Llama3Backbone",
        "Llama3Tokenizer",
        "Llama3CausalLMPreprocessor",
        "Llama3CausalLM",
    ),
    "llama": (
        "LlamaBackbone",
        "LlamaTokenizer",
        "LlamaCausalLMPreprocessor",
        "LlamaCausalLM",
    ),
}


def _check_heads(weight, num_heads):
    if weight.shape[0] % (2 * num_heads):
        raise GGUFError(
            f"A query/key weight of shape {weight.shape} cannot hold {num_heads} "
            "heads of even width."
        )


def unpermute_rows(weight, num_heads):
    """Undoes llama.cpp's per-head `(2, ℓ/2) → (ℓ/2, 2)` reordering of q/k rows.

    Args:
        weight: `(num_heads · ℓ, d)` query or key weight as stored in the file.
        num_heads: heads in that weight (key/value heads for the key).

    Returns:
        The weight with each head's rows in the rotate-half order.
    """
    _check_heads(weight, num_heads)
    head_dim = weight.shape[0] // num_heads
    return (
        weight.reshape(num_heads, head_dim // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def permute_rows(weight, num_heads):
    """llama.cpp's converter: each head's rows `(2, ℓ/2) → (ℓ/2, 2)`.

    The inverse of `unpermute_rows`.
    """
    _check_heads(weight, num_heads)
    head_dim = weight.shape[0] // num_heads
    return (
        weight.reshape(num_heads, 2, head_dim // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _check_head_width(f, hidden_dim, num_heads):
    """Refuses heads KerasHub's Llama cannot hold: it needs head width =
    embedding / heads, all of it rotary."""
    arch = f.architecture
    if hidden_dim % num_heads:
        raise GGUFError(
            f"`{f.path}`: embedding length {hidden_dim} is not a multiple of "
            f"{num_heads} heads; KerasHub's Llama needs head width = embedding / "
            "heads."
        )
    head_dim = hidden_dim // num_heads
    rotary = f.positive(f"{arch}.rope.dimension_count", head_dim)
    key_length = f.positive(f"{arch}.attention.key_length", head_dim)
    if rotary != head_dim or key_length != head_dim:
        raise GGUFError(
            f"`{f.path}`: head width {key_length} with {rotary} rotary dimensions "
            f"(embedding {hidden_dim}, {num_heads} heads); KerasHub's Llama needs "
            "head width = embedding / heads, all of it rotary."
        )


def backbone_config(f):
    """The `LlamaBackbone` arguments of a GGUF `llama` file."""
    arch = f.architecture
    num_heads = f.positive(f"{arch}.attention.head_count")
    hidden_dim = f.positive(f"{arch}.embedding_length")
    _check_head_width(f, hidden_dim, num_heads)
    if f.has_tensor("rope_freqs.weight"):
        raise GGUFError(
            f"`{f.path}` carries per-frequency RoPE factors (`rope_freqs.weight`, "
            "Llama 3.1-style scaling), which the importer does not map yet. "
            "Supported: no scaling or linear scaling."
        )
    return dict(
        vocabulary_size=int(f.tensor_shape("token_embd.weight")[0]),
        num_layers=f.positive(f"{arch}.block_count"),
        num_query_heads=num_heads,
        num_key_value_heads=hyperparameters.key_value_heads(f, num_heads, num_heads),
        hidden_dim=hidden_dim,
        intermediate_dim=f.positive(f"{arch}.feed_forward_length"),
        rope_max_wavelength=hyperparameters.rope_base(f, "rope.freq_base", 10000.0),
        rope_position_scaling_factor=hyperparameters.rope_scaling_factor(f),
        layer_norm_epsilon=hyperparameters.norm_epsilon(f),
        tie_word_embeddings=not f.has_tensor("output.weight"),
    )


def layouts(config, backbone=None):
    """`(top, block)`: every weight as `(keras path, gguf name, layout, shape)`.

    Args:
        config: dict. The backbone's config (`tie_word_embeddings` included).
        backbone: unused; every architecture's `layouts` takes it.
    """
    v, d = config["vocabulary_size"], config["hidden_dim"]
    h, g = config["num_query_heads"], config["num_key_value_heads"]
    width, f = d // h, config["intermediate_dim"]

    def rows_to_heads(n, rotated):
        # (n·ℓ, d) rows ↔ Keras (d, n, ℓ); llama.cpp's row order for q and k.
        to_file = (lambda w: permute_rows(w, n)) if rotated else (lambda w: w)
        from_file = (lambda w: unpermute_rows(w, n)) if rotated else (lambda w: w)
        return mapping.Layout(
            lambda w: from_file(w).T.reshape(d, n, width),
            lambda k: to_file(k.reshape(d, n * width).T),
        )

    # (d, h·ℓ) ↔ Keras (h, ℓ, d).
    output = mapping.Layout(
        lambda w: w.T.reshape(h, width, d), lambda k: k.reshape(h * width, d).T
    )
    same, transpose = mapping.same, mapping.transpose
    top = [
        ("token_embedding/embeddings", "token_embd.weight", same, (v, d)),
        ("sequence_output_layernorm/scale", "output_norm.weight", same, (d,)),
    ]
    if not config["tie_word_embeddings"]:
        head = "token_embedding/reverse_embeddings"
        top.append((head, "output.weight", transpose, (d, v)))
    a = "self_attention/"
    block = [
        (a + "query/kernel", "attn_q.weight", rows_to_heads(h, True), (d, h, width)),
        (a + "key/kernel", "attn_k.weight", rows_to_heads(g, True), (d, g, width)),
        (a + "value/kernel", "attn_v.weight", rows_to_heads(g, False), (d, g, width)),
        (a + "attention_output/kernel", "attn_output.weight", output, (h, width, d)),
        ("self_attention_layernorm/scale", "attn_norm.weight", same, (d,)),
        ("feedforward_layernorm/scale", "ffn_norm.weight", same, (d,)),
        ("feedforward_gate_dense/kernel", "ffn_gate.weight", transpose, (d, f)),
        ("feedforward_intermediate_dense/kernel", "ffn_up.weight", transpose, (d, f)),
        ("feedforward_output_dense/kernel", "ffn_down.weight", transpose, (f, d)),
    ]
    return top, block


KERAS_BLOCK = "transformer_layer_{}/"


def metadata(config):
    """The `llama.*` metadata of a Llama backbone config: `{key: value}`.

    Raises:
        GGUFError: the config uses something llama.cpp's `llama` cannot hold.
    """
    if config.get("rope_frequency_adjustment_factor") is not None:
        raise GGUFError(
            "The model uses Llama 3.1-style per-frequency RoPE scaling, which "
            "save_gguf does not write yet (llama.cpp reads it from a "
            "`rope_freqs.weight` tensor). Supported: no scaling or linear."
        )
    d, h = config["hidden_dim"], config["num_query_heads"]
    if d % h:
        raise GGUFError(f"hidden_dim {d} is not a multiple of {h} heads.")
    scale = float(config.get("rope_position_scaling_factor", 1.0))
    meta = {
        "block_count": int(config["num_layers"]),
        "embedding_length": int(d),
        "feed_forward_length": int(config["intermediate_dim"]),
        "attention.head_count": int(h),
        "attention.head_count_kv": int(config["num_key_value_heads"]),
        "rope.dimension_count": int(d // h),
        "rope.freq_base": float(config["rope_max_wavelength"]),
        "attention.layer_norm_rms_epsilon": float(config["layer_norm_epsilon"]),
        "vocab_size": int(config["vocabulary_size"]),
    }
    if scale != 1.0:
        meta["rope.scaling.type"] = "linear"
        meta["rope.scaling.factor"] = scale
    return meta
