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
- `options`: every other constructor option it understands, with the values it
  supports; `check_options` refuses anything else, so a new KerasHub flag can
  never leave a weight silently wrong.
- `accepts(backbone)`: whether it describes this instance of its backbone
  class (`GemmaBackbone` is Gemma 1 without post-branch norms, Gemma 2
  with them); `True` by default.
- `embeddings(backbone)`: the weights outside the blocks (`Table`, `Norm`,
  `Head` for a language-model head, tied or not, `Write`/`Read` for a pooler,
  `Copy`).
- `block(backbone, index)`: the weights of block `index`, in order.

Teacher and student lists are walked in step, so both must list the same items;
`guide` checks that every student weight is set by one of them.

Weights are named by their path inside the backbone (`variable.path`, e.g.
`"transformer_layer_0/self_attention/query/kernel"`), which is the same for a
teacher and a student built from the same family. Symbolic axis rules:
`"heads"`, `"kv_heads"` (grouped-query key/value heads), `"head_dim"`,
`"neurons"` and `"first"` (a prefix, for position tables).

Reference: arXiv 2510.06502.
"""

import collections
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
class Kernel:
    """A kernel whose axis `d_axis` is the residual stream's width; `select`
    maps each other axis it narrows to an axis rule (`"heads"`, ...)."""

    path: str
    d_axis: int
    select: dict


@dataclasses.dataclass(frozen=True)
class Read(Kernel):
    """A kernel that reads the residual stream on `d_axis`, after `norm`."""

    norm: Optional[Norm] = None
    bias: Optional[str] = None
    # A query kernel: rescaled when the head width shrinks (softmax temperature).
    query: bool = False
    # Also writes a `d`-sized output on this axis (a pooler's `d × d` kernel).
    out_axis: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Write(Kernel):
    """A kernel that writes the residual stream on `d_axis`."""

    bias: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Head:
    """The output head, read after `norm`: the token `table` reversed when the
    backbone ties them, else its own `(d, V)` kernel `reverse`."""

    table: str
    reverse: Optional[str]
    norm: Norm


@dataclasses.dataclass(frozen=True)
class Copy:
    """A weight copied unchanged (it acts inside a head, e.g. Qwen3's q/k norms)."""

    path: str


def item_paths(item):
    """The weight paths an adapter item names (kernel, bias, gain, shift, ...)."""
    if isinstance(item, Norm):
        names = (item.gain, item.shift)
    elif isinstance(item, Kernel):
        names = (item.path, item.bias)
    elif isinstance(item, Head):
        names = (item.reverse,)
    else:
        names = (item.path,)
    return [name for name in names if name is not None]


# Constructor arguments that do not change what any weight means: a student
# may set them as it likes.
FREE_OPTIONS = ("name", "trainable", "dtype", "dropout")
# The `config_keys` of KerasHub's grouped-query decoders (Llama and the
# families built on it, Gemma); those with a `head_dim` argument add it.
GROUPED_QUERY_KEYS = {
    "hidden_dim": "hidden_dim",
    "num_layers": "num_layers",
    "num_heads": "num_query_heads",
    "num_key_value_heads": "num_key_value_heads",
    "intermediate_dim": "intermediate_dim",
}


class Adapter:
    """Base class of the family adapters; see the module docstring."""

    family = None
    backbone_class = None
    norm_kind = None  # "rms" or "layer": LayerNorm needs a mean-preserving M.
    # Post-norm families keep norm gains on the residual stream itself (BERT)
    # or on what each branch writes to it (Gemma 2/3), where a rotation cannot
    # carry them; `projection="auto"` then selects coordinates.
    post_norm = False
    config_keys = {}
    # Rotary position embeddings: the head width must stay the teacher's.
    rotary = False
    # Config units per MLP neuron (Gemma's `intermediate_dim` counts the gate
    # and up widths together, so 2).
    intermediate_units = 1
    # The constructor options the adapter understands beyond the sizes in
    # `config_keys`: name -> the values it supports (a tuple), or None for
    # any value. They define what the weights compute, so teacher and student
    # must agree on each; an option not listed here (a new KerasHub flag) is
    # refused, never ignored.
    options = {}
    # The constructor argument that unties the output head from the token
    # table (None: the family always ties them).
    tie_option = None

    def accepts(self, backbone):
        """Whether the adapter describes `backbone`, an instance of its
        `backbone_class` (one class may hold two families, e.g. Gemma 1 and 2)."""
        return True

    def tied(self, backbone):
        """Whether the backbone's output head is its token table."""
        return bool(backbone.token_embedding.tie_weights)

    def check_options(self, teacher, student):
        """Refuses options the adapter does not understand or that teacher and
        student do not share.

        Raises:
            ValueError: naming each option, its values and what to do.
        """
        known = set(self.config_keys.values()) | set(self.options) | set(FREE_OPTIONS)
        known |= {"vocabulary_size", self.tie_option}
        configs = {}
        for role, model in (("teacher", teacher), ("student", student)):
            config = configs[role] = model.get_config()
            problems = []
            # Weights are placed by path: two weights on one path cannot be told
            # apart.
            counts = collections.Counter(w.path for w in model.weights)
            shared = sorted(path for path, n in counts.items() if n > 1)
            if shared:
                problems.append(f"several of its weights share the paths {shared}")
            unknown = sorted(k for k in config if k not in known)
            if unknown:
                problems.append(f"it does not know the options {unknown}")
            problems += [
                f"it does not support {k}={config[k]!r} (supported: {allowed})"
                for k, allowed in sorted(self.options.items())
                if allowed is not None and k in config and config[k] not in allowed
            ]
            if problems:
                raise ValueError(
                    f"The {self.family} adapter cannot place every weight of the "
                    f"{role} `{model.name}`: {'; '.join(problems)}. GUIDE refuses "
                    "rather than leave weights silently wrong."
                )
        teacher_config, student_config = configs["teacher"], configs["student"]
        differ = [
            f"{k}: teacher {teacher_config.get(k)!r}, student {student_config.get(k)!r}"
            for k in sorted(self.options)
            if teacher_config.get(k) != student_config.get(k)
        ]
        if differ:
            raise ValueError(
                f"Teacher and student differ in options that define what the "
                f"{self.family} weights compute ({'; '.join(differ)}). Build the "
                "student with `keras_guide.build_student(teacher, ...)`, which "
                "copies them."
            )

    def dims(self, backbone):
        """The backbone's sizes (`Dims`), read through `config_keys`.

        A family without a key/value head count has one per query head; one
        without a head width (or with `None`, Mistral's default) has
        `hidden_dim // num_heads`.
        """
        sizes = {name: getattr(backbone, key) for name, key in self.config_keys.items()}
        if sizes.get("num_key_value_heads") is None:
            sizes["num_key_value_heads"] = sizes["num_heads"]
        if sizes.get("head_dim") is None:
            sizes["head_dim"] = sizes["hidden_dim"] // sizes["num_heads"]
        sizes["intermediate_dim"] //= self.intermediate_units
        return Dims(
            vocabulary_size=backbone.vocabulary_size, rotary=self.rotary, **sizes
        )

    def embeddings(self, backbone):
        raise NotImplementedError

    def block(self, backbone, index):
        raise NotImplementedError
