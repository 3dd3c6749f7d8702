"""The adapter protocol: how one KerasHub family lays out its weights.

An adapter describes a backbone declaratively; `keras_guide.guide` does the math.
Adding a family is adding one module that defines an `Adapter` subclass and lists
it in `keras_guide.adapters.ADAPTERS`.

An adapter gives:
- `dims(backbone)`: the sizes GUIDE needs (`Dims`).
- `config_keys`: generic size names (`hidden_dim`, `num_layers`, `num_heads`,
  `num_key_value_heads`, `intermediate_dim`, `head_dim`, ...) mapped to the
  backbone's constructor arguments, used by `build_student`.
- `embeddings(backbone)`: the weights outside the blocks (`Table`, `Norm`,
  `Read` for an untied head, `Write`/`Read` for a pooler, `Copy`).
- `block(backbone, index)`: the weights of block `index`, in order.

Weights are named by their path inside the backbone (`variable.path`, e.g.
`"transformer_layer_0/self_attention/query/kernel"`), which is the same for a
teacher and a student built from the same family. Symbolic axis rules:
`"heads"`, `"kv_heads"` (grouped-query key/value heads), `"head_dim"`,
`"neurons"` and `"first"` (a prefix, for position tables).

Reference: arXiv 2510.06502.
"""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Dims:
    vocabulary_size: int
    hidden_dim: int
    num_layers: int
    num_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_dim: int
    max_sequence_length: Optional[int] = None
    rotary: bool = False


@dataclasses.dataclass(frozen=True)
class Norm:
    """A norm: gain `offset + gain`, optional shift. `post`: the norm sits on
    the residual stream itself (post-LN encoders), so it cannot be folded."""

    gain: str
    shift: Optional[str] = None
    offset: float = 0.0
    post: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    """An embedding table `(rows, d)`; `positions=True` keeps the first rows."""

    path: str
    positions: bool = False
    # Gemma multiplies embeddings by √d: the student table gets √(d_T/d_S).
    sqrt_d_scaled: bool = False


@dataclasses.dataclass(frozen=True)
class Read:
    """A kernel that reads the residual stream on `d_axis`, after `norm`."""

    path: str
    d_axis: int
    select: dict
    norm: Optional[Norm] = None
    bias: Optional[str] = None
    # A query kernel: rescaled when the head width shrinks (softmax temperature).
    query: bool = False
    # Also writes a `d`-sized output on this axis (a pooler's `d × d` kernel).
    out_axis: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Write:
    """A kernel that writes the residual stream on `d_axis`."""

    path: str
    d_axis: int
    select: dict
    bias: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Copy:
    """A weight copied unchanged (it acts inside a head, e.g. Qwen3's q/k norms)."""

    path: str


class Adapter:
    """Base class of the family adapters; see the module docstring."""

    family = None
    backbone_class = None
    norm_kind = None  # "rms" or "layer": LayerNorm needs a mean-preserving M.
    # Post-norm encoders keep norm gains on the residual stream itself, where a
    # rotation cannot carry them; `projection="auto"` then selects coordinates.
    post_norm = False
    tied_head = True
    config_keys = {}

    def dims(self, backbone):
        raise NotImplementedError

    def embeddings(self, backbone):
        raise NotImplementedError

    def block(self, backbone, index):
        raise NotImplementedError
