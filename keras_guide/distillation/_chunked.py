"""The Distiller's cross-entropy and KD terms from hidden states, chunk by chunk.

Over a large vocabulary the logits dominate a distillation step's memory:
Gemma 3's 262,144 tokens make each `(batch, sequence, V)` float32 array of
an 8 × 128 batch 1 GiB, and the step holds several (the teacher's and the
student's logits, their softmaxes, the gradient of the student's). A causal
LM's logits are its last hidden states `h` (a few hundred wide) through one
per-token head (`ReversibleEmbedding(reverse=True)` or a `Dense`), so both
terms can be computed from `h` and the head a chunk of tokens at a time:
`head_losses` never holds more than one chunk's logits, and gives the same
loss and gradients as the whole batch's logits, to float round-off.

Where the memory is saved: on JAX, each chunk's gradient is computed with its
loss in the forward pass (a `jax.custom_vjp` around a `lax.scan` over the
chunks): the backward pass scales what the forward pass summed, so no chunk's
logits outlive it and no matmul is recomputed. TensorFlow and PyTorch compute
the same terms from the whole batch's logits at once (their autodiff would
keep every chunk's logits for the backward pass anyway): exact, and no
smaller than before.
"""

import keras
import numpy as np
from keras import ops

from keras_guide import _backend
from keras_guide.distillation import losses

# Float32 logits held per chunk: 2^24 values (64 MiB); the chunk's softmaxes
# and gradient are a few arrays of this size more. On a 2-core CPU chunks of
# this size run the heads' matmuls as fast as the whole batch (see
# benchmarks/kd_memory.py).
CHUNK_LOGITS = 2**24


def output_head(model):
    """`(trunk, head)` with `model(x) == head(trunk(x))`, the head per token.

    The head is the layer whose single call makes `model`'s output: a
    `keras.layers.ReversibleEmbedding` called in reverse (a KerasHub causal
    LM's tied output embedding) or a `Dense`, on a tensor `h` of the graph.
    The trunk is the nested model (a KerasHub backbone) whose output `h` is,
    called on `model`'s inputs, or else the functional model from `model`'s
    inputs to `h`.

    Returns:
        `(trunk, head)`, or None for a model of another form (not functional,
        several outputs, another last layer).
    """
    if not _backend.is_functional(model) or len(model.outputs) != 1:
        return None
    output = model.outputs[0]
    for layer in model.layers:
        if not isinstance(
            layer, (keras.layers.ReversibleEmbedding, keras.layers.Dense)
        ):
            continue
        for inputs, outputs in _backend.call_nodes(model, layer):
            if outputs[0] is output and len(inputs) == 1:
                hidden = inputs[0]
                if isinstance(layer, keras.layers.ReversibleEmbedding) and (
                    "float" not in str(hidden.dtype)
                    or output.shape[-1] != layer.input_dim
                ):
                    continue
                trunk = _trunk(model, hidden)
                return None if trunk is None else (trunk, layer)
    return None


def _trunk(model, hidden):
    """The model from `model`'s inputs to `hidden` (see `output_head`)."""
    model_inputs = {id(t) for t in keras.tree.flatten(model.input)}
    for layer in model.layers:
        if not _backend.is_functional(layer):
            continue
        calls = _backend.call_nodes(model, layer)
        if (
            len(calls) == 1
            and len(calls[0][1]) == 1
            and calls[0][1][0] is hidden
            and {id(t) for t in calls[0][0]} == model_inputs
        ):
            return layer
    try:
        return keras.Model(model.input, hidden, name=f"{model.name}_trunk")
    except ValueError:
        return None


def head_logits(head, hidden):
    """The logits `head` makes of `hidden` (a reverse call for an embedding)."""
    if isinstance(head, keras.layers.ReversibleEmbedding):
        return head(hidden, reverse=True)
    return head(hidden)


def chunk_tokens(vocabulary, tokens, chunk=None):
    """Tokens per chunk: `chunk`, or as many as `CHUNK_LOGITS` logits hold,
    at most `tokens` and at least 1."""
    if chunk is None:
        chunk = CHUNK_LOGITS // max(int(vocabulary), 1)
    return int(max(1, min(int(chunk), int(tokens))))


def _token_terms(student_logits, teacher_logits, labels, temperature):
    """Per-token CE and KL (as `losses.sparse_cross_entropy` and
    `losses.kl_divergence_from_logits`), with the softmaxes their gradients
    need: `(ce, kl, log_q1, log_q, p)`."""
    log_q1 = ops.log_softmax(student_logits, axis=-1)
    ce = -ops.squeeze(
        ops.take_along_axis(log_q1, ops.expand_dims(labels, -1), axis=-1), -1
    )
    log_p = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_q = ops.log_softmax(student_logits / temperature, axis=-1)
    p = ops.exp(log_p)
    kl = ops.sum(p * (log_p - log_q), axis=-1)
    return ce, kl, log_q1, log_q, p


def head_losses(
    student_hidden,
    student_head,
    teacher_hidden,
    teacher_head,
    labels,
    sample_weight=None,
    temperature=1.0,
    student_loss_weight=0.5,
    kd_weight=0.5,
    chunk=None,
):
    """The Distiller's `α · CE + β · τ² · KL` from the two models' last hidden
    states and output heads, a chunk of tokens at a time.

    `CE = token_mean(−log softmax(z_S)[y])` and
    `KL = token_mean(KL(softmax(z_T/τ) ‖ softmax(z_S/τ)))` with `z = head(h)`,
    averaged over the tokens `sample_weight` keeps; the same values and
    gradients (with respect to the student's hidden states and head weights)
    as `losses.sparse_cross_entropy` and `losses.kd_loss` on the whole
    batch's logits, to float round-off. The teacher gets no gradient. On
    JAX no more than one chunk's logits exist at a time; TensorFlow and
    PyTorch compute the whole batch at once (module docstring).

    Args:
        student_hidden: `h_S`, shape `(..., d_S)`.
        student_head: the student's output layer (`output_head`).
        teacher_hidden: `h_T`, shape `(..., d_T)`, same leading shape.
        teacher_head: the teacher's output layer.
        labels: integer next tokens, shape `(...)`.
        sample_weight: per-token weights, shape `(...)` or a prefix of it,
            or None. Defaults to None.
        temperature: `τ > 0`, a float or scalar tensor. Defaults to 1.0.
        student_loss_weight: `α`, a float or scalar tensor. Defaults to 0.5.
        kd_weight: `β`, a float or scalar tensor. Defaults to 0.5.
        chunk: tokens per chunk, or None for `chunk_tokens`' default.
            Defaults to None.

    Returns:
        `(loss, student_loss, kd_loss)`: `α · CE + β · τ² · KL`, with its
        gradient, and `CE` and `τ² · KL` without gradient (for logs).
    """
    d_s, d_t = student_hidden.shape[-1], teacher_hidden.shape[-1]
    h_s = ops.reshape(student_hidden, (-1, d_s))
    h_t = ops.stop_gradient(ops.reshape(teacher_hidden, (-1, d_t)))
    flat_labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    if sample_weight is None:
        weight = ops.ones(ops.shape(flat_labels), "float32")
    else:
        weight = losses._expand_weight(ops.cast(sample_weight, "float32"), labels)
        weight = ops.reshape(ops.broadcast_to(weight, ops.shape(labels)), (-1,))
    total_weight = ops.sum(weight)
    temperature = ops.cast(temperature, "float32")
    # The two terms' weights per unit of their weighted sums; a batch of
    # zero weights gives 0, as `token_mean` does.
    scale = ops.divide_no_nan(ops.ones((), "float32"), total_weight)
    a = ops.cast(student_loss_weight, "float32") * scale
    b = ops.cast(kd_weight, "float32") * ops.square(temperature) * scale
    if keras.backend.backend() == "jax":
        loss, ce_sum, kl_sum = _jax_sums(
            h_s,
            h_t,
            flat_labels,
            weight,
            student_head,
            teacher_head,
            temperature,
            a,
            b,
            chunk,
        )
    else:
        z_t = ops.stop_gradient(ops.cast(head_logits(teacher_head, h_t), "float32"))
        z_s = ops.cast(head_logits(student_head, h_s), "float32")
        ce, kl, *_ = _token_terms(z_s, z_t, flat_labels, temperature)
        ce_sum, kl_sum = ops.sum(weight * ce), ops.sum(weight * kl)
        loss = a * ce_sum + b * kl_sum
    student_loss = ops.stop_gradient(ce_sum * scale)
    kd = ops.stop_gradient(ops.square(temperature) * kl_sum * scale)
    return loss, student_loss, kd


def _jax_sums(
    h_s, h_t, labels, weight, student_head, teacher_head, temperature, a, b, chunk
):
    """`(a·Σ w·ce + b·Σ w·kl, Σ w·ce, Σ w·kl)` over chunks of tokens, JAX only.

    Each chunk's gradient with respect to `h_S` and the student head's
    trainable weights is computed with its loss (`jax.vjp` of the head) and
    kept; the backward pass scales it by the incoming cotangent. Only the
    first output has a gradient (the Distiller logs the other two).
    """
    import jax

    tokens, vocabulary = h_s.shape[0], _vocabulary(student_head)
    size = chunk_tokens(vocabulary, tokens, chunk)
    count = -(-tokens // size)

    def chunked(x):
        pad = count * size - tokens
        x = ops.pad(x, [(0, pad)] + [(0, 0)] * (len(x.shape) - 1))
        return ops.reshape(x, (count, size, *x.shape[1:]))

    def values(variables):
        return [v.value for v in variables]

    s_train = values(student_head.trainable_variables)
    s_fixed = values(student_head.non_trainable_variables)
    teacher = (
        values(teacher_head.trainable_variables),
        values(teacher_head.non_trainable_variables),
    )

    def chunk_sums(h, ht, y, w, train, fixed, teacher, tau, a, b):
        z_t = ops.cast(_call(teacher_head, *teacher, ht), "float32")

        def student_logits(h, train):
            return _call(student_head, train, fixed, h)

        z_s, pullback = jax.vjp(student_logits, h, train)
        z = ops.cast(z_s, "float32")
        ce, kl, log_q1, log_q, p = _token_terms(z, z_t, y, tau)
        w_ = ops.expand_dims(w, -1)
        grad = a * w_ * (ops.exp(log_q1) - ops.one_hot(y, z.shape[-1])) + (
            b / tau
        ) * w_ * (ops.exp(log_q) - p)
        d_h, d_train = pullback(ops.cast(grad, z_s.dtype))
        return ops.sum(w * ce), ops.sum(w * kl), d_h, d_train

    def forward(h, train, rest):
        ht, y, w, fixed, teacher, tau, a, b = rest

        def body(carry, xs):
            ce_sum, kl_sum, grads = carry
            ce, kl, d_h, d_train = chunk_sums(*xs, train, fixed, teacher, tau, a, b)
            grads = [g + d for g, d in zip(grads, d_train)]
            return (ce_sum + ce, kl_sum + kl, grads), d_h

        zero = ops.zeros((), "float32")
        init = (zero, zero, [ops.zeros_like(t) for t in train])
        (ce_sum, kl_sum, d_train), d_h = jax.lax.scan(
            body, init, (chunked(h), chunked(ht), chunked(y), chunked(w))
        )
        d_h = ops.reshape(d_h, (count * size, h.shape[-1]))[:tokens]
        return (a * ce_sum + b * kl_sum, ce_sum, kl_sum), (d_h, d_train, rest)

    @jax.custom_vjp
    def sums(h, train, rest):
        return forward(h, train, rest)[0]

    def backward(saved, cotangents):
        d_h, d_train, rest = saved

        def scaled(gradient):
            return ops.cast(cotangents[0], gradient.dtype) * gradient

        no_gradient = jax.tree_util.tree_map(lambda _: None, rest)
        return scaled(d_h), [scaled(g) for g in d_train], no_gradient

    sums.defvjp(forward, backward)
    rest = (h_t, labels, weight, s_fixed, teacher, temperature, a, b)
    return sums(h_s, s_train, rest)


def _call(head, trainable, non_trainable, hidden):
    """`head_logits` with the head's weights given as values; unlike
    `Layer.stateless_call` (which runs `call`), through `__call__`, so a
    mixed-precision head casts its inputs and weights as in the model."""
    mapping = [
        *zip(head.trainable_variables, trainable),
        *zip(head.non_trainable_variables, non_trainable),
    ]
    with keras.StatelessScope(state_mapping=mapping):
        return head_logits(head, hidden)


def _vocabulary(head):
    if isinstance(head, keras.layers.ReversibleEmbedding):
        return head.input_dim
    return head.units


def check_chunk(value):
    """`logits_chunk_tokens` checked: None, or an integer ≥ 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            "`logits_chunk_tokens` must be None (automatic chunks), 0 (the whole "
            "batch's logits at once) or a positive number of tokens per chunk. "
            f"Received: logits_chunk_tokens={value!r}"
        )
    return int(value)
