"""GGUF `gemma3` checkpoints (text-only Gemma 3) as KerasHub `Gemma3CausalLM`.

Gemma's RMSNorms multiply by `1 + scale`; llama.cpp's converter stores
`1 + scale` itself, so every norm weight of the file (q/k norms included)
loses its `+1` here and gets it back on export. llama.cpp rotates Gemma's
query/key halves like the original (no row permutation). KerasHub's Gemma 3
fixes the rest of the layout, as llama.cpp's does: 5 sliding-window layers
then 1 global one, RoPE wavelengths 10,000 (local) and 1,000,000 (global),
embeddings scaled by `√d`.
"""

import math

from keras_guide.gguf import hyperparameters
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

# llama.cpp scales Gemma 3 queries by 1/√(d/heads) instead of 1/√ℓ when the
# model has 62 blocks (the 27B model; its `query_pre_attn_scalar`), by 1/√ℓ
# otherwise: the file does not say which.
_27B_BLOCKS = 62
_GLOBAL_WAVELENGTH = 1_000_000.0
_LOCAL_WAVELENGTH = 10_000.0
_SLIDING_PATTERN = 6


def llama_cpp_query_scale(num_layers, hidden_dim, num_heads, head_dim):
    """The factor llama.cpp multiplies Gemma 3 queries by."""
    if num_layers == _27B_BLOCKS:
        return 1.0 / math.sqrt(hidden_dim // num_heads)
    return 1.0 / math.sqrt(head_dim)


def keras_query_scale(backbone):
    """The factor a `Gemma3Backbone`'s attention multiplies queries by.

    Read off the attention layer, not the config: KerasHub 0.32's decoder
    blocks give their attention `query_head_dim_normalize=True` whatever the
    backbone's own `query_head_dim_normalize` says.
    """
    attention = backbone.transformer_layers[0].attention
    if attention.query_head_dim_normalize:
        return 1.0 / math.sqrt(attention.head_dim)
    return 1.0 / math.sqrt(attention.hidden_dim // attention.num_query_heads)


def _check_fixed_layout(f):
    """Refuses RoPE bases or a sliding-window pattern other than the ones
    KerasHub's Gemma 3 fixes."""
    wavelength = hyperparameters.rope_base(f, "rope.freq_base", _GLOBAL_WAVELENGTH)
    local = hyperparameters.rope_base(f, "rope.freq_base_swa", _LOCAL_WAVELENGTH)
    if (wavelength, local) != (_GLOBAL_WAVELENGTH, _LOCAL_WAVELENGTH):
        raise GGUFError(
            f"`{f.path}` has RoPE bases {wavelength} (global) and {local} "
            f"(sliding-window layers); KerasHub's Gemma 3 fixes "
            f"{_GLOBAL_WAVELENGTH:.0f} and {_LOCAL_WAVELENGTH:.0f}."
        )
    key = f"{f.architecture}.attention.sliding_window_pattern"
    pattern = f.get(key, _SLIDING_PATTERN)
    if pattern != _SLIDING_PATTERN:
        raise GGUFError(
            f"`{f.path}` has sliding-window pattern {pattern!r}; KerasHub's "
            f"Gemma 3 fixes {_SLIDING_PATTERN - 1} sliding-window blocks, then one "
            "global one."
        )


def _optional_positive(f, key, kind=int):
    """Metadata `key` as a positive `kind`, or None when it is absent."""
    return None if f.get(key) is None else f.positive(key, kind=kind)


def backbone_config(f):
    """The `Gemma3Backbone` arguments of a GGUF `gemma3` file."""
    arch = f.architecture
    if f.has_tensor("output.weight"):
        raise GGUFError(f"`{f.path}` has an untied output head; Gemma 3 ties it.")
    hidden_dim = f.positive(f"{arch}.embedding_length")
    head_dim = f.positive(f"{arch}.attention.key_length")
    num_layers = f.positive(f"{arch}.block_count")
    num_heads = f.positive(f"{arch}.attention.head_count")
    num_kv_heads = hyperparameters.key_value_heads(f, num_heads)
    if f.positive(f"{arch}.attention.value_length", head_dim) != head_dim:
        raise GGUFError(f"`{f.path}`: key and value head widths differ.")
    _check_fixed_layout(f)
    scaling = hyperparameters.rope_scaling_factor(f)
    window = _optional_positive(f, f"{arch}.attention.sliding_window")
    return dict(
        vocabulary_size=int(f.tensor_shape("token_embd.weight")[0]),
        image_size=None,
        num_layers=num_layers,
        num_query_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=f.positive(f"{arch}.feed_forward_length"),
        head_dim=head_dim,
        query_head_dim_normalize=True,
        use_query_key_norm=True,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=_optional_positive(
            f, f"{arch}.attn_logit_softcapping", float
        ),
        final_logit_soft_cap=_optional_positive(
            f, f"{arch}.final_logit_softcapping", float
        ),
        use_sliding_window_attention=bool(window),
        sliding_window_size=int(window or 4096),
        global_rope_scaling_factor=scaling,
        layer_norm_epsilon=hyperparameters.norm_epsilon(f),
    )


def layouts(config, backbone=None):
    """`(top, block)`: every weight as `(keras path, gguf name, layout, shape)`.

    Args:
        config: dict. The backbone's config.
        backbone: a `Gemma3Backbone` or None. Its query scale sets the factor
            the stored query norm gains carry (`_query_norm_factor`); None (for
            shapes only) leaves it 1. Defaults to `None`.
    """
    v, d, width = config["vocabulary_size"], config["hidden_dim"], config["head_dim"]
    h, g = config["num_query_heads"], config["num_key_value_heads"]
    f = config["intermediate_dim"]
    factor = 1.0 if backbone is None else _query_norm_factor(config, backbone)

    def heads_first(n):
        # (n·ℓ, d) rows ↔ Keras (n, d, ℓ).
        return mapping.Layout(
            lambda w: w.reshape(n, width, d).transpose(0, 2, 1),
            lambda k: k.transpose(0, 2, 1).reshape(n * width, d),
        )

    # (d, h·ℓ) ↔ Keras (h, ℓ, d).
    output = mapping.Layout(
        lambda w: w.reshape(d, h, width).transpose(1, 2, 0),
        lambda k: k.transpose(2, 0, 1).reshape(d, h * width),
    )
    norm = mapping.shift(1.0)  # llama.cpp stores Gemma's `1 + scale`.
    query_norm = mapping.elementwise(
        lambda w: w / factor - 1.0, lambda k: (k + 1.0) * factor
    )
    transpose = mapping.transpose
    top = [
        ("token_embedding/embeddings", "token_embd.weight", mapping.same, (v, d)),
        ("final_normalization/scale", "output_norm.weight", norm, (d,)),
    ]
    norms = [
        ("pre_attention_norm", "attn_norm"),
        ("post_attention_norm", "post_attention_norm"),
        ("pre_ffw_norm", "ffn_norm"),
        ("post_ffw_norm", "post_ffw_norm"),
    ]
    a = "attention/"
    block = [(k + "/scale", name + ".weight", norm, (d,)) for k, name in norms] + [
        (a + "key_norm/scale", "attn_k_norm.weight", norm, (width,)),
        (a + "query_norm/scale", "attn_q_norm.weight", query_norm, (width,)),
        (a + "query/kernel", "attn_q.weight", heads_first(h), (h, d, width)),
        (a + "key/kernel", "attn_k.weight", heads_first(g), (g, d, width)),
        (a + "value/kernel", "attn_v.weight", heads_first(g), (g, d, width)),
        (a + "attention_output/kernel", "attn_output.weight", output, (h, width, d)),
        ("ffw_gating/kernel", "ffn_gate.weight", transpose, (d, f)),
        ("ffw_gating_2/kernel", "ffn_up.weight", transpose, (d, f)),
        ("ffw_linear/kernel", "ffn_down.weight", transpose, (f, d)),
    ]
    return top, block


KERAS_BLOCK = "decoder_block_{}/"


def _query_norm_factor(config, backbone):
    """KerasHub's query scale over llama.cpp's for this model (1 unless the
    model has 62 blocks and a head width other than width / heads).

    The ratio lives in the query norm gain (exact up to rounding: the gain
    multiplies the normalized query before RoPE, which is linear): divided
    out on import, multiplied in on export.
    """
    return keras_query_scale(backbone) / llama_cpp_query_scale(
        config["num_layers"],
        config["hidden_dim"],
        config["num_query_heads"],
        config["head_dim"],
    )


def text_only_unsupported(config):
    """What a `Gemma3Backbone` config uses that a text-only Gemma 3 model
    (llama.cpp's `gemma3`, `transformers`' `Gemma3ForCausalLM`) lacks: a list
    of names, empty when none.

    Args:
        config: the backbone's `get_config()`.
    """
    unsupported = {
        "vision_encoder": config.get("vision_encoder") is not None,
        "use_query_key_norm=False": not config.get("use_query_key_norm", True),
        "use_post_attention_norm=False": not config.get(
            "use_post_attention_norm", True
        ),
        "use_post_ffw_norm=False": not config.get("use_post_ffw_norm", True),
        "use_bidirectional_attention": bool(config.get("use_bidirectional_attention")),
        "is_embedding_model": bool(config.get("is_embedding_model")),
    }
    return [name for name, present in unsupported.items() if present]


def metadata(config):
    """The `gemma3.*` metadata of a `Gemma3Backbone` config: `{key: value}`.

    llama.cpp's Gemma 3 fixes what KerasHub's does (five sliding-window
    blocks then a global one, counted from the first block; RoPE bases
    10,000 and 1,000,000; embeddings scaled by √d); a student of any depth
    keeps that pattern by its own block index on both sides. Where llama.cpp
    chooses another query scale than KerasHub (a 62-block model whose head
    width is not width / heads) the ratio is folded into the query norm
    gains (`tensors`).

    Raises:
        GGUFError: the config uses what llama.cpp's `gemma3` does not have.
    """
    found = text_only_unsupported(config) + [
        name
        for name, present in (
            (
                "attention_logit_soft_cap",
                config.get("attention_logit_soft_cap") is not None,
            ),
            (
                "local_rope_scaling_factor != 1",
                float(config.get("local_rope_scaling_factor", 1.0)) != 1.0,
            ),
        )
        if present
    ]
    if found:
        raise GGUFError(
            f"This Gemma 3 model uses {found}, which llama.cpp's `gemma3` "
            "architecture does not have; save it as a KerasHub preset instead."
        )
    meta = {
        "block_count": int(config["num_layers"]),
        "embedding_length": int(config["hidden_dim"]),
        "feed_forward_length": int(config["intermediate_dim"]),
        "attention.head_count": int(config["num_query_heads"]),
        "attention.head_count_kv": int(config["num_key_value_heads"]),
        "attention.key_length": int(config["head_dim"]),
        "attention.value_length": int(config["head_dim"]),
        "rope.freq_base": _GLOBAL_WAVELENGTH,
        "attention.layer_norm_rms_epsilon": float(config["layer_norm_epsilon"]),
    }
    if config.get("use_sliding_window_attention"):
        meta["attention.sliding_window"] = int(config["sliding_window_size"])
    if config.get("final_logit_soft_cap") is not None:
        meta["final_logit_softcapping"] = float(config["final_logit_soft_cap"])
    scale = float(config.get("global_rope_scaling_factor", 1.0))
    if scale != 1.0:
        meta["rope.scaling.type"] = "linear"
        meta["rope.scaling.factor"] = scale
    return meta
