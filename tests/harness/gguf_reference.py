"""Float64 NumPy forward passes of GGUF checkpoints, run the way llama.cpp runs them.

Independent of keras_guide's importer: tensors are read with the `gguf`
package directly and used in the file's own layout (Llama query/key rows
permuted for pair-wise rotation; Gemma norm weights that already hold their
`+1`), so agreement with the imported Keras model checks every layout fact the
importer relies on.
"""

import gguf
import numpy as np


class File:
    def __init__(self, path):
        self.reader = gguf.GGUFReader(path)
        self.tensors = {t.name: t for t in self.reader.tensors}

    def meta(self, key, default=None):
        field = self.reader.fields.get(key)
        if field is None:
            return default
        if field.types[0] == gguf.GGUFValueType.STRING:
            return bytes(field.parts[field.data[0]]).decode()
        return field.parts[field.data[0]].tolist()[0]

    def __call__(self, name):
        t = self.tensors[name]
        shape = tuple(reversed(t.shape.tolist()))
        return np.asarray(
            gguf.quants.dequantize(t.data, t.tensor_type), np.float64
        ).reshape(shape)


def _rms(x, gain, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain


def _softmax_attention(q, k, v, mask):
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scores = np.einsum("qhd,khd->hqk", q, k) + mask
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", scores, v).reshape(q.shape[0], -1)


def _angles(n, head_dim, base, scale=1.0):
    inv_freq = base ** (-np.arange(0, head_dim, 2) / head_dim)
    angles = (np.arange(n) / scale)[:, None] * inv_freq[None, :]
    return np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]


def rotate_pairs(v, cos, sin):
    """llama.cpp's "normal" RoPE: rotates dimensions (2i, 2i + 1)."""
    even, odd = v[..., 0::2], v[..., 1::2]
    out = np.empty_like(v)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def rotate_halves(v, cos, sin):
    """NeoX-style RoPE: rotates dimensions (i, i + ℓ/2)."""
    half = v.shape[-1] // 2
    a, b = v[..., :half], v[..., half:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def llama_logits(path, token_ids, trace=None):
    """Logits `(n, V)`; with a dict `trace`, also fills it per block `i` with
    `block_input[i]`, `block_output[i]`, `heads[i]` (the attention's per-head
    output before the output kernel, `(n, h, ℓ)`), `neurons[i]` (the MLP's
    `silu(gate) · up`, `(n, f)`), and `final_input`."""
    f = File(path)
    trace = {} if trace is None else trace
    arch = "llama"
    eps = f.meta(f"{arch}.attention.layer_norm_rms_epsilon")
    heads = f.meta(f"{arch}.attention.head_count")
    kv_heads = f.meta(f"{arch}.attention.head_count_kv", heads)
    d = f.meta(f"{arch}.embedding_length")
    head_dim = d // heads
    table = f("token_embd.weight")
    x = table[np.asarray(token_ids)]
    n = len(token_ids)
    cos, sin = _angles(n, head_dim, f.meta(f"{arch}.rope.freq_base", 10000.0))
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(f.meta(f"{arch}.block_count")):
        b = f"blk.{i}."
        trace.setdefault("block_input", {})[i] = x
        h = _rms(x, f(b + "attn_norm.weight"), eps)
        q = rotate_pairs(
            (h @ f(b + "attn_q.weight").T).reshape(n, heads, head_dim), cos, sin
        )
        k = rotate_pairs(
            (h @ f(b + "attn_k.weight").T).reshape(n, kv_heads, head_dim), cos, sin
        )
        v = (h @ f(b + "attn_v.weight").T).reshape(n, kv_heads, head_dim)
        attended = _softmax_attention(q / np.sqrt(head_dim), k, v, mask)
        trace.setdefault("heads", {})[i] = attended.reshape(n, heads, head_dim)
        x = x + attended @ f(b + "attn_output.weight").T
        h = _rms(x, f(b + "ffn_norm.weight"), eps)
        gate = h @ f(b + "ffn_gate.weight").T
        up = h @ f(b + "ffn_up.weight").T
        trace.setdefault("neurons", {})[i] = gate / (1 + np.exp(-gate)) * up
        x = x + trace["neurons"][i] @ f(b + "ffn_down.weight").T
        trace.setdefault("block_output", {})[i] = x
    trace["final_input"] = x
    x = _rms(x, f("output_norm.weight"), eps)
    head = f("output.weight") if "output.weight" in f.tensors else table
    return x @ head.T


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def gemma3_logits(path, token_ids):
    f = File(path)
    arch = "gemma3"
    eps = f.meta(f"{arch}.attention.layer_norm_rms_epsilon")
    heads = f.meta(f"{arch}.attention.head_count")
    kv_heads = f.meta(f"{arch}.attention.head_count_kv")
    d = f.meta(f"{arch}.embedding_length")
    head_dim = f.meta(f"{arch}.attention.key_length")
    window = f.meta(f"{arch}.attention.sliding_window")
    blocks = f.meta(f"{arch}.block_count")
    # llama.cpp's query scale: 1/√(d / heads) for 62 blocks (27B), else 1/√ℓ.
    query_scale = 1 / np.sqrt(d // heads if blocks == 62 else head_dim)
    table = f("token_embd.weight")
    x = table[np.asarray(token_ids)] * np.sqrt(d)
    n = len(token_ids)
    positions = np.arange(n)
    causal = positions[:, None] >= positions[None, :]
    local = causal & (positions[:, None] - positions[None, :] < window)
    for i in range(blocks):
        b = f"blk.{i}."
        is_local = i % 6 < 5
        cos, sin = _angles(n, head_dim, 10_000.0 if is_local else 1_000_000.0)
        mask = np.where(local if is_local else causal, 0.0, -np.inf)
        h = _rms(x, f(b + "attn_norm.weight"), eps)
        q = _rms(
            (h @ f(b + "attn_q.weight").T).reshape(n, heads, head_dim),
            f(b + "attn_q_norm.weight"),
            eps,
        )
        k = _rms(
            (h @ f(b + "attn_k.weight").T).reshape(n, kv_heads, head_dim),
            f(b + "attn_k_norm.weight"),
            eps,
        )
        v = (h @ f(b + "attn_v.weight").T).reshape(n, kv_heads, head_dim)
        q, k = rotate_halves(q, cos, sin), rotate_halves(k, cos, sin)
        out = (
            _softmax_attention(q * query_scale, k, v, mask)
            @ f(b + "attn_output.weight").T
        )
        x = x + _rms(out, f(b + "post_attention_norm.weight"), eps)
        h = _rms(x, f(b + "ffn_norm.weight"), eps)
        mlp = (
            _gelu_tanh(h @ f(b + "ffn_gate.weight").T) * (h @ f(b + "ffn_up.weight").T)
        ) @ f(b + "ffn_down.weight").T
        x = x + _rms(mlp, f(b + "post_ffw_norm.weight"), eps)
    x = _rms(x, f("output_norm.weight"), eps)
    return x @ table.T
