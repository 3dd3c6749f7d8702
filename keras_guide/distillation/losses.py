"""Knowledge-distillation losses as small pure functions of logits, plus `KDLoss`.

Every function here is per-step code: `keras.ops` only, float32 arithmetic
from log-softmax (finite for logits of any magnitude), and token averages
`Σ w·v / Σ w` over the tokens a `sample_weight` (usually the padding mask)
keeps. They compose into the loss of `keras_guide.distillation.Distiller`.

One loss, three forms, as Keras pairs `kl_divergence` with `KLDivergence`:
`kd_loss` is the function, `KDLoss` the same as a `keras.losses.Loss` for
`compile(loss=...)`, and `LogitsDistillation` (in `terms`, Keras'
distiller's name) the `Distiller`'s term that calls `kd_loss`, or
`top_k_kd_loss` for an offline teacher.

Reference: Trinh, Menghani, Vee, arXiv 2510.06502 (GUIDE + distillation);
Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network" (2015).
"""

import keras
from keras import ops


def _float32(x):
    return ops.cast(x, "float32")


def _expand_weight(sample_weight, values):
    """Gives `sample_weight` the rank of `values` by appending unit axes."""
    weight_shape = tuple(sample_weight.shape)
    value_shape = tuple(values.shape)
    if len(weight_shape) > len(value_shape) or any(
        w is not None and v is not None and w not in (1, v)
        for w, v in zip(weight_shape, value_shape)
    ):
        raise ValueError(
            "`sample_weight` must weight tokens: its shape must be a prefix of "
            f"the per-token loss shape {value_shape} (for a language model, "
            "pass the `(batch, sequence)` padding mask, or one weight per "
            f"sequence). Received: sample_weight.shape={weight_shape}"
        )
    for _ in range(len(value_shape) - len(weight_shape)):
        sample_weight = ops.expand_dims(sample_weight, -1)
    return sample_weight


def token_mean(values, sample_weight=None):
    """Averages per-token values over the tokens `sample_weight` keeps.

    `mean = Σ_t w_t · v_t / Σ_t w_t`, or the plain mean without weights.
    A batch whose weights are all zero gives 0, not NaN.

    Args:
        values: per-token values, e.g. of shape `(batch, sequence)`.
        sample_weight: optional weights of the same shape, or of a prefix
            of it (`(batch,)` weights whole sequences).

    Returns:
        A float32 scalar.

    Raises:
        ValueError: if `sample_weight`'s shape is not a prefix of `values`'.

    Example:
    >>> float(token_mean([[1.0, 3.0]], [[1.0, 0.0]]))  # the padded token is ignored
    1.0
    """
    values = _float32(values)
    if sample_weight is None:
        return ops.mean(values)
    weight = _expand_weight(_float32(sample_weight), values)
    weight = ops.broadcast_to(weight, ops.shape(values))
    return ops.divide_no_nan(ops.sum(values * weight), ops.sum(weight))


def sparse_cross_entropy(labels, logits):
    """Per-token cross-entropy `−log softmax(z)[y]`, from logits.

    Args:
        labels: integer class ids, shape `(...)`.
        logits: shape `(..., V)`.

    Returns:
        float32 values of shape `(...)`.
    """
    log_probs = ops.log_softmax(_float32(logits), axis=-1)
    labels = ops.expand_dims(ops.cast(labels, "int32"), -1)
    return -ops.squeeze(ops.take_along_axis(log_probs, labels, axis=-1), -1)


def kl_divergence_from_logits(teacher_logits, student_logits, temperature=1.0):
    """Per-token `KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`, from logits.

    `KL = Σ_v p_v (log p_v − log q_v)` with `log p = log_softmax(z_T/τ)` and
    `log q = log_softmax(z_S/τ)`; tokens the teacher gives probability 0
    contribute exactly 0, so logits of ±1e4 give finite values and gradients.

    Args:
        teacher_logits: `z_T`, shape `(..., V)`.
        student_logits: `z_S`, same shape.
        temperature: `τ > 0`, a float or a scalar tensor.

    Returns:
        float32 values of shape `(...)`, without the `τ²` factor.
    """
    log_p = ops.log_softmax(_float32(teacher_logits) / temperature, axis=-1)
    log_q = ops.log_softmax(_float32(student_logits) / temperature, axis=-1)
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def kd_loss(teacher_logits, student_logits, temperature=1.0, sample_weight=None):
    """Token-averaged knowledge-distillation loss from logits.

    `L_kd = τ² · Σ_t w_t KL(softmax(z_T,t/τ) ‖ softmax(z_S,t/τ)) / Σ_t w_t`
    (docs/method.md §6). The `τ²` keeps gradient magnitudes comparable across
    temperatures (Hinton et al., 2015).

    Args:
        teacher_logits: `z_T`, shape `(..., V)`; any float dtype (cast to
            float32).
        student_logits: `z_S`, same shape.
        temperature: `τ > 0`.
        sample_weight: optional per-token weights `w`, shape `(...)` or a
            prefix of it.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: if the logits' shapes differ.

    Example:
    >>> import numpy as np
    >>> z = np.random.default_rng(0).normal(size=(2, 5, 11))
    >>> float(kd_loss(z, z))  # identical distributions
    0.0

    Reference: arXiv 2510.06502; Hinton, Vinyals, Dean (2015).
    """
    _check_same_shape(teacher_logits, student_logits)
    kl = kl_divergence_from_logits(teacher_logits, student_logits, temperature)
    return ops.square(temperature) * token_mean(kl, sample_weight)


def top_k_kd_loss(
    teacher_top_k_logits,
    teacher_top_k_indices,
    student_logits,
    temperature=1.0,
    sample_weight=None,
    teacher_log_normalizer=None,
    teacher_temperature=None,
):
    """`kd_loss` against a teacher stored as its top-k logits (offline teacher).

    With the teacher's log-normalizer `log Z = logsumexp(z_T/τ₀)` (stored by
    `teacher_top_k(..., temperature=τ₀)`) and `τ = τ₀`, the teacher's tail
    (every class outside its top `k`) is kept as one class: with
    `p_i = exp(v_i/τ − log Z)`, `p_tail = 1 − Σ p_i`, the student's
    `q_i = softmax(z_S/τ)[idx_i]` and `q_tail = 1 − Σ q_i`,
    `L = τ² · token_mean(Σ_{i≤k} p_i (log p_i − log q_i)
    + p_tail (log p_tail − log q_tail))`.
    That is the exact KL between the two distributions over `k + 1` classes:
    never above the full KL (the tail's inner mismatch is what it drops), and
    equal to it for `k = V`.

    Without a normalizer (or when `τ ≠ τ₀`, as under a temperature schedule),
    the teacher is renormalized over its `k` classes, `p̃ = softmax(v/τ)`:
    `L = τ² · token_mean(Σ_{i≤k} p̃_i (log p̃_i − log q_i))`, which overstates
    the loss unless the top `k` hold most of the teacher's mass at `τ`
    (`benchmarks/offline_teacher.py` prints both).

    Args:
        teacher_top_k_logits: `v`, shape `(..., k)`.
        teacher_top_k_indices: class ids of `v`, integer, shape `(..., k)`.
        student_logits: `z_S`, shape `(..., V)`.
        temperature: `τ > 0`.
        sample_weight: optional per-token weights.
        teacher_log_normalizer: optional `logsumexp(z_T/τ₀)`, shape `(...)`.
        teacher_temperature: `τ₀`, a scalar or any array of equal values
            (per row, as datasets carry it); required with the normalizer.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: for a normalizer without its temperature.
    """
    temperature = _float32(temperature)
    log_q = ops.log_softmax(_float32(student_logits) / temperature, axis=-1)
    log_q = ops.take_along_axis(
        log_q, ops.cast(teacher_top_k_indices, "int32"), axis=-1
    )
    scaled = _float32(teacher_top_k_logits) / temperature
    log_p = ops.log_softmax(scaled, axis=-1)
    kl = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    if teacher_log_normalizer is not None:
        if teacher_temperature is None:
            raise ValueError(
                "`teacher_log_normalizer` needs the `teacher_temperature` it "
                "was computed at (`teacher_top_k(..., temperature=τ)` stores both)."
            )
        log_p = scaled - ops.expand_dims(_float32(teacher_log_normalizer), -1)
        p = ops.exp(log_p)
        p_tail = ops.maximum(1.0 - ops.sum(p, axis=-1), 0.0)
        # `1 − Σ q_i` loses float32 precision only once the student's tail is
        # below ~1e-6; the floor keeps the log finite there.
        q_tail = ops.maximum(1.0 - ops.sum(ops.exp(log_q), axis=-1), _TAIL_FLOOR)
        tail = p_tail * (ops.log(ops.maximum(p_tail, _TAIL_FLOOR)) - ops.log(q_tail))
        with_tail = ops.sum(p * (log_p - log_q), axis=-1) + tail
        same = ops.all(ops.equal(_float32(teacher_temperature), temperature))
        kl = ops.where(same, with_tail, kl)
    return ops.square(temperature) * token_mean(kl, sample_weight)


_TAIL_FLOOR = 1e-7


def hidden_state_loss(student_hidden, teacher_hidden, sample_weight=None):
    """Token-averaged mean squared error between hidden states.

    `L_h = token_mean(mean_j (h_S,t,j − h_T,t,j)²)`: the student's states
    already mapped to the teacher's width by the projector.

    Args:
        student_hidden: shape `(..., d)`.
        teacher_hidden: same shape.
        sample_weight: optional per-token weights.

    Returns:
        A float32 scalar.
    """
    _check_same_shape(teacher_hidden, student_hidden, "hidden states")
    error = ops.mean(
        ops.square(_float32(student_hidden) - _float32(teacher_hidden)), axis=-1
    )
    return token_mean(error, sample_weight)


def _check_same_shape(teacher, student, what="logits"):
    t_shape, s_shape = tuple(teacher.shape), tuple(student.shape)
    if len(t_shape) != len(s_shape) or any(
        a is not None and b is not None and a != b for a, b in zip(t_shape, s_shape)
    ):
        raise ValueError(
            f"Teacher and student {what} must have the same shape; the "
            "teacher and student must share the tokenizer (vocabulary). "
            f"Received: teacher shape={t_shape}, student shape={s_shape}"
        )


@keras.saving.register_keras_serializable(package="keras_guide")
class KDLoss(keras.losses.Loss):
    """Knowledge-distillation loss `τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`.

    A thin `keras.losses.Loss` over `kl_divergence_from_logits`: `y_true` is
    the teacher's logits, `y_pred` the student's. The default reduction
    divides by the sum of the sample weights, so a padding mask passed as
    `sample_weight` gives the average over real tokens.

    Args:
        temperature: `τ > 0`. Defaults to 1.0.
        reduction: a Keras reduction. Defaults to `"mean_with_sample_weight"`.
        name: the loss name.
        dtype: the loss computation dtype.

    Raises:
        ValueError: if `temperature` is not a positive number.

    Example:
    >>> import numpy as np
    >>> z = np.zeros((2, 3, 5), "float32")
    >>> float(KDLoss(temperature=2.0)(z, z))
    0.0

    Reference: arXiv 2510.06502; Hinton, Vinyals, Dean (2015).
    """

    def __init__(
        self,
        temperature=1.0,
        reduction="mean_with_sample_weight",
        name="kd_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_temperature(temperature)

    def call(self, y_true, y_pred):
        kl = kl_divergence_from_logits(y_true, y_pred, self.temperature)
        return self.temperature**2 * kl

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config


def check_temperature(temperature):
    """Returns `temperature` as a float, or raises naming the argument."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(
            "`temperature` must be a positive number. "
            f"Received: temperature={temperature!r}"
        )
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(
            "`temperature` must be a positive, finite number (typical values: "
            f"1 to 4). Received: temperature={temperature}"
        )
    return float(temperature)
