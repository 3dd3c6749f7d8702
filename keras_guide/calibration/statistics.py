"""Activation statistics of a teacher on calibration text, gathered batch by batch.

The teacher runs eagerly on each batch while the layers that GUIDE's choices
depend on are observed: every block (its input and output), the final norm
(its input), and the kernels that write heads and MLP neurons into the
residual stream (their inputs). Only running sums are kept, in float64 on the
host, so memory is one batch's activations plus `O(d² + n·(h + f))`; the
teacher's weights and layers are left exactly as they were.

Reference: arXiv 2510.06502; docs/method.md §10.
"""

import dataclasses
import time

import keras
import numpy as np

from keras_guide import _backend
from keras_guide import _host
from keras_guide.adapters import adapter_for
from keras_guide.adapters import backbone_of
from keras_guide.adapters.base import Head
from keras_guide.adapters.base import Write

_UNIT_RULES = ("heads", "neurons")


@dataclasses.dataclass(frozen=True)
class ActivationStatistics:
    """What the teacher's activations say about its residual stream and units.

    Attributes:
        gram: `(d, d)` float64 `Σ v vᵀ` over every real token at every block
            boundary (each block's input and the final norm's input), each
            token's vector `v = x / ‖x‖` of unit length, so every boundary and
            every token weighs the same whatever its scale.
        head_energy: `(n, h)` per block, `Σ_t ‖o_t,h W_O,h‖²`: the energy each
            query head writes into the stream.
        neuron_energy: `(n, f)` per block, `Σ_t a_t,j² ‖W_down,j‖²`.
        block_change: `(n,)` per block, the mean over tokens of
            `1 − cos(x_in, x_out)` (ShortGPT's block influence).
        tokens: the number of real (unpadded) calibration tokens.
        seconds: wall-clock time of the pass.
    """

    gram: np.ndarray
    head_energy: np.ndarray
    neuron_energy: np.ndarray
    block_change: np.ndarray
    tokens: int
    seconds: float


def _numpy(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)


def _unit_axis(item):
    """The kernel axis a `Write` selects whole units on (heads or neurons), or None."""
    for axis, rule in item.select.items():
        if rule in _UNIT_RULES:
            return axis, rule
    return None


class _Collector:
    """Running sums, updated by the observed layers during one batch at a time."""

    def __init__(self, d, n, h, f):
        self.gram = np.zeros((d, d))
        self.heads = np.zeros((n, h))
        self.neurons = np.zeros((n, f))
        self.change = np.zeros((n,))
        self.mask = None  # (N,) float64 weights of the current batch's tokens.

    def stream(self, x):
        v = _numpy(x).reshape(self.mask.size, -1)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.where(norms > 0, norms, 1.0)
        self.gram += (v * self.mask[:, None]).T @ v

    def block(self, index, x_in, x_out):
        a = _numpy(x_in).reshape(self.mask.size, -1)
        b = _numpy(x_out).reshape(self.mask.size, -1)
        denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosine = np.sum(a * b, axis=1) / np.where(denominator > 0, denominator, 1.0)
        self.change[index] += np.sum((1.0 - cosine) * self.mask)

    def units(self, target, index, x, gram):
        """Energy each unit writes, `Σ_t x_t,u G_u x_t,uᵀ` with `G_u = W_u W_uᵀ`
        (`gram`: `(units, r, r)`), from the layer's input `x` `(..., units, r)`."""
        n, units, width = self.mask.size, gram.shape[0], gram.shape[1]
        x = _numpy(x).reshape(n, units, width)
        energy = np.einsum("nur,nur->nu", np.einsum("nur,urs->nus", x, gram), x)
        target[index] += self.mask @ energy


def _unit_gram(kernel, d_axis, unit_axis):
    """`G_u = W_u W_uᵀ` per unit, `(units, r, r)`, the stream axis summed out.

    `W_u` is unit `u`'s slice of the kernel, `(r, d)`, with `r` the unit's
    own width (a head's `ℓ`, 1 for a neuron) in the layer input's order.
    """
    w = np.moveaxis(kernel, (unit_axis, d_axis), (0, -1))
    w = w.reshape(w.shape[0], -1, w.shape[-1])
    return np.einsum("urd,usd->urs", w, w)


def _observe(layer, observer, observed):
    """Wraps `layer.call` so `observer(inputs, output)` sees each call."""
    original = layer.call

    def call(*args, **kwargs):
        output = original(*args, **kwargs)
        observer(args[0] if args else next(iter(kwargs.values())), output)
        return output

    layer.call = call
    observed.append(layer)


def _plan_observers(backbone, adapter, collector, layers):
    """Attaches the observers; returns the list of wrapped layers."""
    observed = []
    dims = adapter.dims(backbone)
    for index in range(dims.num_layers):
        items = adapter.block(backbone, index)
        block_layer = backbone.get_layer(items[0].path.split("/")[0])

        def on_block(x_in, out, index=index):
            collector.stream(x_in)
            collector.block(index, x_in, out[0] if isinstance(out, tuple) else out)

        _observe(block_layer, on_block, observed)
        for item in items:
            unit = _unit_axis(item) if isinstance(item, Write) else None
            if unit is None:
                continue
            axis, rule = unit
            kernel = _host.to_numpy(_variable(backbone, item.path)).astype(np.float64)
            gram = _unit_gram(kernel, item.d_axis, axis)
            target = collector.heads if rule == "heads" else collector.neurons

            def on_write(x, _, target=target, index=index, gram=gram):
                collector.units(target, index, x, gram)

            _observe(layers[item.path.rsplit("/", 1)[0]], on_write, observed)
    heads = [item for item in adapter.embeddings(backbone) if isinstance(item, Head)]
    if heads:  # The final norm's input is the last boundary of a decoder.
        final_norm = layers[heads[0].norm.gain.rsplit("/", 1)[0]]
        _observe(final_norm, lambda x, _: collector.stream(x), observed)
    return observed


def _variable(backbone, path):
    for variable in backbone.weights:
        if variable.path == path:
            return variable
    raise KeyError(path)


def collect_statistics(model, batches):
    """Runs the teacher over calibration batches and returns `ActivationStatistics`.

    Args:
        model: a KerasHub backbone or task model of a supported family with a
            language-model head (decoders: GPT-2, Llama, Gemma, Qwen, ...).
        batches: an iterable of input dicts (`token_ids`, `padding_mask`, ...),
            as `calibration_batches` makes them.

    Returns:
        `ActivationStatistics`.
    """
    backbone = backbone_of(model)
    adapter = adapter_for(backbone)
    dims = adapter.dims(backbone)
    collector = _Collector(
        dims.hidden_dim, dims.num_layers, dims.num_heads, dims.intermediate_dim
    )
    layers = {layer.path: layer for layer in _backend.sublayers(backbone)}
    start = time.perf_counter()
    tokens = 0
    observed = _plan_observers(backbone, adapter, collector, layers)
    try:
        for x in batches:
            collector.mask = np.asarray(x["padding_mask"], dtype=np.float64).reshape(-1)
            tokens += int(collector.mask.sum())
            backbone(x, training=False)
    finally:
        for layer in observed:
            del layer.call  # Back to the class's own method.
    return ActivationStatistics(
        gram=collector.gram,
        head_energy=collector.heads,
        neuron_energy=collector.neurons,
        block_change=collector.change / max(tokens, 1),
        tokens=tokens,
        seconds=time.perf_counter() - start,
    )
