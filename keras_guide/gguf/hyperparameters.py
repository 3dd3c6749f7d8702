"""The hyperparameters llama.cpp's transformer architectures share, read from
a GGUF file's `<architecture>.*` metadata and checked: key/value heads, RoPE
bases and linear scaling, the RMS norm's epsilon.

Each reader raises a `GGUFError` naming the file and key, so an architecture
module (`llama.py`, `gemma3.py`) reads these the same way.
"""

from keras_guide.gguf.reader import GGUFError

# What checkpoints use, with room: a rotary base (10^4 to 10^6 in Llama,
# SmolLM2 and Gemma 3) and a norm epsilon (10^-6 to 10^-5) outside these make
# the model's numbers meaningless, so the metadata is refused.
ROPE_BASE_LIMITS = (1.0, 1e10)
EPSILON_LIMITS = (1e-12, 0.1)


def key_value_heads(f, num_heads, default=None):
    """`attention.head_count_kv`, which must divide the `num_heads` query heads.

    Args:
        f: a `GGUFFile`.
        num_heads: int. The query heads.
        default: int or None. The value when the key is absent; None
            requires it. Defaults to `None`.

    Raises:
        GGUFError: the key is missing (without a default), not a positive
            whole number, or does not divide the query heads.
    """
    num_kv_heads = f.positive(f"{f.architecture}.attention.head_count_kv", default)
    if num_heads % num_kv_heads:
        raise GGUFError(
            f"`{f.path}`: {num_heads} query heads cannot share {num_kv_heads} "
            "key/value heads evenly."
        )
    return num_kv_heads


def rope_base(f, key, default):
    """A RoPE base (`rope.freq_base`, ...) within `ROPE_BASE_LIMITS`.

    Args:
        f: a `GGUFFile`.
        key: str. The key after `<architecture>.`.
        default: float. The value when the key is absent.
    """
    return f.positive(f"{f.architecture}.{key}", default, float, ROPE_BASE_LIMITS)


def rope_scaling_factor(f):
    """The linear RoPE scaling factor (`rope.scaling.factor`), 1 without scaling.

    Raises:
        GGUFError: a scaling type other than none or linear.
    """
    arch = f.architecture
    scaling = f.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise GGUFError(
            f"`{f.path}` uses RoPE scaling {scaling!r}; the importer supports "
            "'none' and 'linear'."
        )
    if scaling == "linear":
        return f.positive(f"{arch}.rope.scaling.factor", 1.0, float)
    return 1.0


def norm_epsilon(f):
    """The RMS norm's epsilon (`attention.layer_norm_rms_epsilon`), required
    and within `EPSILON_LIMITS`."""
    return f.positive(
        f"{f.architecture}.attention.layer_norm_rms_epsilon",
        kind=float,
        limits=EPSILON_LIMITS,
    )
