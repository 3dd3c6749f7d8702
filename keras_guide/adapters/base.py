"""The adapter protocol: how one KerasHub family lays out its weights.

An adapter describes a backbone declaratively; `keras_guide.guide` does the math.
Adding a family is adding one module that defines an `Adapter` subclass and lists
it in `keras_guide.adapters.ADAPTERS`.

An adapter gives:
- `config_keys`: generic size names (the `Dims` fields `hidden_dim`,
  `num_layers`, `num_heads`, `num_key_value_heads`, `intermediate_dim`,
  `head_dim`, `max_sequence_length`) mapped to the backbone's constructor
  arguments, which KerasHub backbones also keep as attributes. `build_student`
  writes sizes through it and `Adapter.dims` reads them back through it, so a
  family states its names once. `rotary` and `intermediate_units` cover the
  rest (see `Adapter`).
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
    """The sizes GUIDE reads from a backbone, in generic names.

    `intermediate_dim` counts MLP neurons (one per selectable index), and
    `head_dim` is the width of one attention head.
    """

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
    """A norm: gain `offset + gain`, optional shift."""

    gain: str
    shift: Optional[str] = None
    offset: float = 0.0


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
    config_keys = {}
    # Rotary position embeddings: the head width must stay the teacher's.
    rotary = False
    # Config units per MLP neuron (Gemma's `intermediate_dim` counts the gate
    # and up widths together, so 2).
    intermediate_units = 1

    def dims(self, backbone):
        """The backbone's sizes (`Dims`), read through `config_keys`.

        A family without a key/value head count has one per query head; one
        without a head width has `hidden_dim // num_heads`.
        """
        sizes = {name: getattr(backbone, key) for name, key in self.config_keys.items()}
        sizes.setdefault("num_key_value_heads", sizes["num_heads"])
        sizes.setdefault("head_dim", sizes["hidden_dim"] // sizes["num_heads"])
        sizes["intermediate_dim"] //= self.intermediate_units
        return Dims(
            vocabulary_size=backbone.vocabulary_size, rotary=self.rotary, **sizes
        )

    def embeddings(self, backbone):
        raise NotImplementedError

    def block(self, backbone, index):
        raise NotImplementedError
