"""Tiny GGUF checkpoints written with `gguf.GGUFWriter`, in llama.cpp's layout."""

import contextlib

import gguf
import numpy as np

from keras_guide.bpe import bytes_to_unicode

Q = gguf.GGMLQuantizationType
SEQ = 8


def bpe_vocabulary():
    """Specials, the 256 byte symbols and a few merges: `(tokens, types, merges)`."""
    symbols = list(bytes_to_unicode().values())
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s"]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + symbols
    tokens += ["".join(m.split(" ")) for m in merges]
    types = [3, 3, 3] + [1] * (len(tokens) - 3)
    return tokens, types, merges


def sentencepiece_vocabulary(specials=("<pad>", "<eos>", "<bos>", "<unk>")):
    """Specials (Gemma's by default), byte pieces and a few scored pieces.

    Returns `(tokens, scores, types)`.
    """
    tokens = list(specials) + [f"<0x{b:02X}>" for b in range(256)]
    types = [3, 3, 3, 2] + [6] * 256
    scores = [0.0] * len(tokens)
    for rank, piece in enumerate(
        ["▁", "e", "t", "h", "▁t", "he", "▁the", "a", "▁a", "s", "n", "o", "r"]
    ):
        tokens.append(piece)
        types.append(1)
        scores.append(-float(rank))
    return tokens, scores, types


def _tensor(writer, name, value, quant):
    value = np.asarray(value, np.float32)
    if quant in (None, Q.F32) or value.ndim == 1:
        writer.add_tensor(name, value)
    else:
        writer.add_tensor(name, gguf.quants.quantize(value, quant), raw_dtype=quant)


def permute_rows(weight, num_heads):
    """llama.cpp's converter: each head's rows `(2, ℓ/2) → (ℓ/2, 2)`."""
    return (
        weight.reshape(
            num_heads, 2, weight.shape[0] // num_heads // 2, *weight.shape[1:]
        )
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_llama(
    path,
    quant=Q.Q8_0,
    tied=True,
    tokenizer="gpt2",
    seed=0,
    layers=2,
    drop=(),
    extra=(),
    metadata=None,
):
    """A 2-block Llama (32 wide, 4 query / 2 key-value heads, MLP 64).

    `drop` leaves tensors out and `extra` adds unknown ones (for bad-input
    tests); `metadata` overrides or adds keys.
    """
    rng = np.random.default_rng(seed)
    d, heads, kv_heads, f_dim = 32, 4, 2, 64
    head_dim = d // heads
    writer = gguf.GGUFWriter(path, "llama")
    if tokenizer == "gpt2":
        tokens, types, merges = bpe_vocabulary()
        writer.add_string("tokenizer.ggml.model", "gpt2")
        writer.add_array("tokenizer.ggml.merges", merges)
    else:
        # Llama 2's specials: <unk>, <s>, </s>, and a padding piece.
        tokens, scores, types = sentencepiece_vocabulary(
            ("<pad>", "</s>", "<s>", "<unk>")
        )
        writer.add_string("tokenizer.ggml.model", tokenizer)
        writer.add_array("tokenizer.ggml.scores", scores)
    meta = {
        "llama.block_count": layers,
        "llama.embedding_length": d,
        "llama.feed_forward_length": f_dim,
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": kv_heads,
        "llama.rope.freq_base": 500.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "tokenizer.ggml.bos_token_id": 1 if tokenizer == "gpt2" else 2,
        "tokenizer.ggml.eos_token_id": 2 if tokenizer == "gpt2" else 1,
        "tokenizer.ggml.add_bos_token": False,
    }
    meta.update(metadata or {})
    for key, value in meta.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, value)
    writer.add_array("tokenizer.ggml.tokens", tokens)
    writer.add_array("tokenizer.ggml.token_type", types)
    vocab = len(tokens)
    weights = {
        "token_embd.weight": rng.normal(size=(vocab, d)),
        "output_norm.weight": 1 + 0.5 * rng.normal(size=d),
    }
    if not tied:
        weights["output.weight"] = rng.normal(size=(vocab, d)) * 0.2
    for i in range(layers):
        b = f"blk.{i}."
        weights.update(
            {
                b + "attn_norm.weight": 1 + 0.3 * rng.normal(size=d),
                b + "ffn_norm.weight": 1 + 0.3 * rng.normal(size=d),
                b + "attn_q.weight": permute_rows(
                    rng.normal(size=(heads * head_dim, d)) * 0.3, heads
                ),
                b + "attn_k.weight": permute_rows(
                    rng.normal(size=(kv_heads * head_dim, d)) * 0.3, kv_heads
                ),
                b + "attn_v.weight": rng.normal(size=(kv_heads * head_dim, d)) * 0.3,
                b + "attn_output.weight": rng.normal(size=(d, heads * head_dim)) * 0.2,
                b + "ffn_gate.weight": rng.normal(size=(f_dim, d)) * 0.2,
                b + "ffn_up.weight": rng.normal(size=(f_dim, d)) * 0.2,
                b + "ffn_down.weight": rng.normal(size=(d, f_dim)) * 0.2,
            }
        )
    for name in extra:
        weights[name] = rng.normal(size=(d,))
    for name, value in weights.items():
        if name not in drop:
            _tensor(writer, name, value, quant)
    _finish(writer)
    return path


def write_gemma3(
    path,
    quant=Q.Q8_0,
    seed=0,
    layers=6,
    window=3,
    heads=2,
    context_length=None,
    strings=None,
):
    """A 6-block Gemma 3 (five sliding-window layers, one global), 32 wide,
    heads 16 wide; `context_length`, where given, is written (llama.cpp
    needs it)."""
    rng = np.random.default_rng(seed)
    d, kv_heads, head_dim, f_dim = 32, 1, 16, 64
    writer = gguf.GGUFWriter(path, "gemma3")
    tokens, scores, types = sentencepiece_vocabulary()
    for key, value in {
        "gemma3.block_count": layers,
        "gemma3.embedding_length": d,
        "gemma3.feed_forward_length": f_dim,
        "gemma3.attention.head_count": heads,
        "gemma3.attention.head_count_kv": kv_heads,
        "gemma3.attention.key_length": head_dim,
        "gemma3.attention.value_length": head_dim,
        "gemma3.attention.sliding_window": window,
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.unknown_token_id": 3,
        "tokenizer.ggml.padding_token_id": 0,
        **({"gemma3.context_length": context_length} if context_length else {}),
    }.items():
        writer.add_uint32(key, value)
    writer.add_float32("gemma3.rope.freq_base", 1_000_000.0)
    writer.add_float32("gemma3.attention.layer_norm_rms_epsilon", 1e-6)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_bool("tokenizer.ggml.add_space_prefix", False)
    writer.add_string("tokenizer.ggml.model", "llama")
    for key, value in (strings or {}).items():  # e.g. a chat template
        writer.add_string(key, value)
    writer.add_array("tokenizer.ggml.tokens", tokens)
    writer.add_array("tokenizer.ggml.scores", scores)
    writer.add_array("tokenizer.ggml.token_type", types)
    norm = lambda n: 1 + 0.3 * rng.normal(size=n)  # noqa: E731 (the file stores 1 + scale)
    weights = {
        "token_embd.weight": rng.normal(size=(len(tokens), d)) * 0.2,
        "output_norm.weight": norm(d),
    }
    for i in range(layers):
        b = f"blk.{i}."
        weights.update(
            {
                b + "attn_norm.weight": norm(d),
                b + "post_attention_norm.weight": norm(d),
                b + "ffn_norm.weight": norm(d),
                b + "post_ffw_norm.weight": norm(d),
                b + "attn_q_norm.weight": norm(head_dim),
                b + "attn_k_norm.weight": norm(head_dim),
                b + "attn_q.weight": rng.normal(size=(heads * head_dim, d)) * 0.3,
                b + "attn_k.weight": rng.normal(size=(kv_heads * head_dim, d)) * 0.3,
                b + "attn_v.weight": rng.normal(size=(kv_heads * head_dim, d)) * 0.3,
                b + "attn_output.weight": rng.normal(size=(d, heads * head_dim)) * 0.2,
                b + "ffn_gate.weight": rng.normal(size=(f_dim, d)) * 0.2,
                b + "ffn_up.weight": rng.normal(size=(f_dim, d)) * 0.2,
                b + "ffn_down.weight": rng.normal(size=(d, f_dim)) * 0.2,
            }
        )
    for name, value in weights.items():
        _tensor(writer, name, value, quant)
    _finish(writer)
    return path


def _finish(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def token_ids(vocabulary_size, seed=0, length=SEQ):
    return np.random.default_rng(seed).integers(3, vocabulary_size, length)


@contextlib.contextmanager
def built_backbones():
    """Records the keyword arguments of every `Llama3Backbone` built inside
    the block (a list): a file refused before anything is allocated builds
    none."""
    import keras_hub

    cls = keras_hub.models.Llama3Backbone
    own = cls.__dict__.get("__init__")
    original = cls.__init__
    built = []

    def spy(self, *args, **kwargs):
        built.append(kwargs)
        original(self, *args, **kwargs)

    cls.__init__ = spy
    try:
        yield built
    finally:
        if own is None:
            del cls.__init__
        else:
            cls.__init__ = own
