"""Student shapes from a size target: the candidates `compress` scores.

A target is a share of the teacher's parameters (`"25%"`), a parameter
count (`"30M"`, `"3e7"`) or an explicit shape (`"num_layers=8,hidden_dim=384"`).
Candidates keep the family's constraints: every head as wide as the
teacher's (a rotary head may not narrow; `build_student` refuses it), the
teacher's ratio of query to key/value heads where it divides, the MLP's ratio
to the width, a tied head stays tied; widths are multiples of the head width
(and of `gguf.dtypes.FALLBACK_BLOCK`, 32, read off the type table: every
matrix then splits into whole blocks of each type or of the 32-wide types
llama.cpp's K-quants fall back to, so no type leaves a matrix in float16;
rows that are also multiples of 256 take the K-quant itself). For each depth
in a spread of depths the widest shape within the target is kept, so the
candidates trade depth for width at about the same size.

Parameters are counted exactly without building any candidate: each weight's
axes are matched once to the sizes they follow (`_Counter`).
"""

import dataclasses
import math
import re

from keras_guide.adapters import adapter_for
from keras_guide.adapters import backbone_of
from keras_guide.gguf.dtypes import FALLBACK_BLOCK

_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}
# Depths tried, as shares of the teacher's.
_DEPTHS = (1.0, 0.75, 2 / 3, 0.5, 1 / 3, 0.25)
# A candidate holds at least this share of the target (widths come in whole
# heads, so a depth may have no width closer to it).
_LOWEST = 0.7
# The reference models' widths exceed the teacher's by this, so each axis's
# length differs from the teacher's (`_Counter`); not a block width, which is
# `FALLBACK_BLOCK`.
_REFERENCE_EXTRA = 32


@dataclasses.dataclass(frozen=True)
class Shape:
    """A student shape: `build_student`'s sizes and its parameter count."""

    sizes: dict
    parameters: int

    def describe(self):
        return ", ".join(f"{k}={v}" for k, v in self.sizes.items())


def count_parameters(model):
    """The number of scalars in `model`'s backbone weights."""
    return int(sum(math.prod(w.shape) for w in backbone_of(model).weights))


def parse_parameter_count(text, teacher_parameters):
    """A `--size` as a parameter count, or `None` for an explicit shape.

    Raises:
        ValueError: a malformed size, or one outside (0, teacher].
    """
    raw = str(text).strip().lower().replace("_", "")
    if "=" in raw:
        return None
    try:
        if raw.endswith("%"):
            value = float(raw[:-1]) / 100 * teacher_parameters
        elif raw and raw[-1] in _SUFFIXES:
            value = float(raw[:-1]) * _SUFFIXES[raw[-1]]
        else:
            value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            "--size is a share of the teacher's parameters ('25%'), a count "
            "('30M', '3e7') or a shape ('num_layers=8,hidden_dim=384'). "
            f"Received: {text!r}"
        )
    if value >= teacher_parameters:
        raise ValueError(
            f"--size {text} is {value:,.0f} parameters, not smaller than the "
            f"teacher's {teacher_parameters:,}: a student must be smaller."
        )
    return int(value)


def parse_shape(text, teacher):
    """`"num_layers=8,hidden_dim=384"` → sizes (generic names, checked)."""
    adapter = adapter_for(backbone_of(teacher))
    sizes = {}
    for item in filter(None, re.split(r"[,\s]+", str(text).strip())):
        name, _, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in adapter.config_keys:
            raise ValueError(
                f"--size: the {adapter.family} family has no size {name!r}; it "
                f"has {sorted(adapter.config_keys)}. Received: {text!r}"
            )
        try:
            sizes[name] = int(value)
        except ValueError:
            sizes[name] = -1
        if sizes[name] <= 0:
            raise ValueError(
                f"--size: {name} must be a positive integer. Received: {item!r}"
            )
    if not sizes:
        raise ValueError(f"--size names no size. Received: {text!r}")
    return sizes


def _round_to(value, unit):
    return max(unit, int(round(value / unit)) * unit)


class _Counter:
    """Exact parameter counts of a family's shapes, without building them.

    Every weight's axes are named once: two reference models with one and two
    blocks and sizes unlike the teacher's (a one-token vocabulary, one more
    key/value head, ...) are built, and each axis of each weight is matched
    to the size it follows by comparing its length in the teacher and in the
    reference. A student's count is then a sum of products.
    """

    def __init__(self, teacher):
        self.backbone = backbone_of(teacher)
        self.adapter = adapter_for(self.backbone)
        self.config = self.backbone.get_config()
        self.dims = self.adapter.dims(self.backbone)
        self.tied = bool(getattr(self.backbone.token_embedding, "tie_weights", True))
        d = self.dims
        group = max(1, d.num_heads // max(1, d.num_key_value_heads))
        kv = d.num_key_value_heads + 1
        heads = kv * group
        width = (
            heads * d.head_dim
            if "head_dim" not in self.adapter.config_keys
            else d.hidden_dim + _REFERENCE_EXTRA
        )
        units = getattr(self.adapter, "intermediate_units", 1)
        self.reference = {
            "hidden_dim": width,
            "num_heads": heads,
            "num_key_value_heads": kv,
            "intermediate_dim": (d.intermediate_dim + _REFERENCE_EXTRA) * units,
            "vocabulary_size": 1,
        }
        one, two = self._build(1), self._build(2)
        teacher_shapes = {w.path: tuple(w.shape) for w in self.backbone.weights}
        pairs = {  # (teacher length, reference length) → size name
            (d.hidden_dim, width): "hidden_dim",
            (d.num_heads, heads): "num_heads",
            (d.num_key_value_heads, kv): "num_key_value_heads",
            (
                d.intermediate_dim * units,
                self.reference["intermediate_dim"],
            ): "intermediate_dim",
            (d.vocabulary_size, 1): "vocabulary_size",
        }
        self.outside, self.block = [], []
        block_paths = {re.sub(r"_1/", "_0/", p, count=1) for p in set(two) - set(one)}
        for path, shape in one.items():
            roles = []
            for t_len, r_len in zip(teacher_shapes[path], shape):
                if t_len == r_len:
                    roles.append(t_len)  # a constant (e.g. the head width)
                elif (t_len, r_len) in pairs:
                    roles.append(pairs[(t_len, r_len)])
                else:
                    raise ValueError(
                        f"Cannot tell which size axis of `{path}` follows "
                        f"(teacher {teacher_shapes[path]}, reference {shape}); pass "
                        "the shape with --size, e.g. 'num_layers=8,hidden_dim=384'."
                    )
            (self.block if path in block_paths else self.outside).append(roles)
        if len(block_paths) != len(self.block):
            raise ValueError(
                "Cannot tell a block's weights from the others; pass the shape "
                "with --size, e.g. 'num_layers=8,hidden_dim=384'."
            )

    def _build(self, layers):
        """`{path: shape}` of a reference model with `layers` blocks."""
        import keras

        config = dict(self.config)
        for key, value in self.reference.items():
            config[self.adapter.config_keys.get(key, key)] = value
        config[self.adapter.config_keys["num_layers"]] = layers
        config["name"] = "shape_reference"
        if self.adapter.tie_option is not None:
            config[self.adapter.tie_option] = self.tied
        with keras.StatelessScope():
            model = type(self.backbone).from_config(config)
        return {w.path: tuple(w.shape) for w in model.weights}

    def parameters(self, sizes, layers):
        values = {
            "vocabulary_size": self.dims.vocabulary_size,
            "num_key_value_heads": self.dims.num_key_value_heads,
            **{k: v for k, v in sizes.items() if k != "num_layers"},
        }

        def count(roles):
            return math.prod(r if isinstance(r, int) else values[r] for r in roles)

        return sum(count(r) for r in self.outside) + layers * sum(
            count(r) for r in self.block
        )


def _width_sizes(dims, adapter, width):
    """The sizes of a student `width` wide that keep the family's rules."""
    ratio = width / dims.hidden_dim
    head_dim = dims.head_dim
    group = max(1, dims.num_heads // max(1, dims.num_key_value_heads))
    if "head_dim" in adapter.config_keys:
        # The head width is its own size (Gemma): keep it, scale the heads.
        heads = max(1, min(dims.num_heads, round(dims.num_heads * ratio)))
    else:
        heads = width // head_dim
    # The fewest key/value heads that divide the heads into groups no larger
    # than the teacher's (groups cannot grow).
    kv_heads = next(
        k for k in range(max(1, -(-heads // group)), heads + 1) if heads % k == 0
    )
    if kv_heads > dims.num_key_value_heads:
        return None  # no grouping of these heads fits the teacher's
    units = getattr(adapter, "intermediate_units", 1)
    config_intermediate = dims.intermediate_dim * units
    intermediate = min(
        config_intermediate,
        _round_to(config_intermediate * ratio, FALLBACK_BLOCK * units),
    )
    sizes = {
        "hidden_dim": width,
        "num_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_dim": intermediate,
    }
    return {k: v for k, v in sizes.items() if k in adapter.config_keys}


def candidate_shapes(teacher, target, max_candidates=5, full_width=False):
    """Shapes of about `target` parameters, one per depth, widest first.

    Args:
        teacher: the teacher (KerasHub backbone or task model).
        target: the parameter count to stay within.
        max_candidates: how many to return (spread over depths).
        full_width: also the teacher's full width at the most blocks within
            `target` (ShortGPT's depth-only pruning), when that is a new
            shape: it starts worst and trains fastest, so only a search that
            trains candidates can judge it.

    Returns:
        A list of `Shape`s, each at most `target` parameters and at least
        `_LOWEST` of it, sorted by depth (deepest first).

    Raises:
        ValueError: no shape of this family meets the target (too small:
            the message gives the smallest possible).
    """
    counter = _Counter(teacher)
    dims, adapter = counter.dims, counter.adapter
    # Widths in whole heads (and whole quantization blocks where the teacher
    # is wide enough to leave a choice of several).
    unit = dims.head_dim if "head_dim" not in adapter.config_keys else 8
    if dims.hidden_dim >= 8 * math.lcm(unit, FALLBACK_BLOCK):
        unit = math.lcm(unit, FALLBACK_BLOCK)
    widths = [
        w
        for w in range(unit, dims.hidden_dim + 1, unit)
        if _width_sizes(dims, adapter, w) is not None
    ]
    depths = sorted(
        {max(1, round(dims.num_layers * share)) for share in _DEPTHS}, reverse=True
    )
    shapes = []
    for layers in depths:
        best = None
        low, high = 0, len(widths) - 1
        while low <= high:  # the widest width within the target
            mid = (low + high) // 2
            sizes = _width_sizes(dims, adapter, widths[mid])
            count = counter.parameters(sizes, layers)
            if count <= target:
                best, low = Shape({"num_layers": layers, **sizes}, count), mid + 1
            else:
                high = mid - 1
        if best is not None and best.parameters >= _LOWEST * target:
            shapes.append(best)
    if not shapes:
        smallest = counter.parameters(_width_sizes(dims, adapter, widths[0]), 1)
        raise ValueError(
            f"No {adapter.family} student of this teacher has between "
            f"{_LOWEST:.0%} and "
            f"100 % of {target:,} parameters (the smallest, one block "
            f"{widths[0]} wide, has {smallest:,}: the token table alone is "
            f"{dims.vocabulary_size:,} x width). Ask for a larger --size."
        )
    if len(shapes) > max_candidates:
        step = (len(shapes) - 1) / max(1, max_candidates - 1)
        shapes = [shapes[round(i * step)] for i in range(max_candidates)]
    if full_width:
        sizes = _width_sizes(dims, adapter, dims.hidden_dim)
        layers = _full_width_layers(counter, sizes, target)
        deep = {"num_layers": layers, **sizes}
        if layers >= 1 and deep not in [s.sizes for s in shapes]:
            shapes.append(Shape(deep, counter.parameters(sizes, layers)))
            shapes.sort(key=lambda s: -s.sizes["num_layers"])
    return shapes


def _full_width_layers(counter, sizes, target):
    """The most blocks of `sizes` (the teacher's widths) within `target`
    parameters, fewer than the teacher's; 0 where not one fits."""
    outside = counter.parameters(sizes, 0)
    layers = (target - outside) // max(1, counter.parameters(sizes, 1) - outside)
    return int(max(0, min(counter.dims.num_layers - 1, layers)))


def full_width_blocks(teacher, target):
    """`(blocks, teacher's blocks)`: the most blocks a student at the
    teacher's full width has within `target` parameters (ShortGPT's
    depth-only pruning; fewer than the teacher's, 0 where not one fits)."""
    counter = _Counter(teacher)
    sizes = _width_sizes(counter.dims, counter.adapter, counter.dims.hidden_dim)
    return _full_width_layers(counter, sizes, target), counter.dims.num_layers
