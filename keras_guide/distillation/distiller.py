"""`Distiller`: masked knowledge distillation of a teacher into a student.

The class holds what it is (its arguments, sizes, checks and serialization);
its loss per step lives in `_step_loss`, its `fit`, `evaluate` and `predict`
with the host checks in `_trainer`, the argument checks in `_arguments` and
the float16 guards in `_half_precision`.
"""

import warnings

import keras
import numpy as np

from keras_guide.distillation import _arguments
from keras_guide.distillation import _chunked
from keras_guide.distillation import _data_checks
from keras_guide.distillation import _half_precision
from keras_guide.distillation import offline
from keras_guide.distillation._step_loss import StepLoss
from keras_guide.distillation._trainer import CheckedTrainer
from keras_guide.regularizers import track_guide_state


@keras.saving.register_keras_serializable(package="keras_guide")
class Distiller(CheckedTrainer, StepLoss, keras.Model):
    """Trains a student on labels and on a frozen teacher's outputs.

    The loss of each batch (docs/method.md §6), with `α = student_loss_weight`,
    `β_i = (1 − α) · distillation_loss_weights[i]` and `w_t` the token weights
    (`sample_weight`, usually the padding mask):

    `L = α · CE(y, z_S) + β_kd · τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ))
    + Σ_i β_i · MSE(h_S,i P_i + b_i, h_T,i) + Σ regularization losses`,

    each term averaged over the kept tokens, `Σ_t w_t ℓ_t / Σ_t w_t`, and
    computed from logits with log-softmax (finite for any logit size). The
    regularization losses are the student's (a `GuideRegularizer`'s pull to
    the guided weights included). The weighting follows
    `keras.distillation.Distiller`, whose arguments this class accepts, so a
    switch is a change of import; unlike it, this class honours
    `sample_weight`, keeps the student's regularization losses, computes the
    KL on probabilities, accepts a teacher in a lower precision (bf16) and
    reaches layers inside nested models (KerasHub backbones). Each term
    computes its own loss (`DistillationLoss.compute_loss`); the Distiller
    gathers the outputs the terms read, in one forward pass per model, and
    sums `β_i` times each term in their order.

    The teacher runs in inference mode, gets no gradient and is never changed;
    its outputs are cast to float32. `call` and `predict` run the student.
    `α`, `β_i` and `τ` are non-trainable variables (`student_loss_weight`,
    `distillation_loss_weights`, `kd_weight`, `temperature`) that a
    `keras_guide.callbacks.GuideSchedule` may change during `fit` without
    retracing. The history reports `student_loss`, `kd_loss`, `guide_loss`
    (the regularization losses), `hidden_loss` (with feature terms) and
    `loss`, the total.

    Targets may be the labels, or `{"labels": y, **teacher_top_k(...)}` for an
    offline teacher (`offline_teacher_dataset` builds such batches): its
    stored top-k logits replace the teacher's forward pass in the KD term
    (`top_k_kd_loss`).

    Args:
        teacher: a `keras.Model` returning logits `(..., V)`.
        student: a `keras.Model` returning logits `(..., V)` (same `V`).
        distillation_losses: a `DistillationLoss`, a list of them, or None. A
            `LogitsDistillation`, a `FeatureDistillation` or any
            `DistillationLoss`, or a list of them (the `keras.distillation`
            namesakes of the first two are accepted too); at most one
            `LogitsDistillation`. Defaults to `None` (`LogitsDistillation()`,
            `τ = 1`).
        distillation_loss_weights: list of float, or None. One weight per
            distillation loss. Defaults to `None` (1 each).
        student_loss_weight: float. `α` in `[0, 1]`; with the default,
            `L = 0.5 · CE + 0.5 · τ² · KL`. Defaults to `0.5`.
        logits_chunk_tokens: int or None. How training computes `CE` and the
            KD term over the vocabulary. Where both models end in a per-token
            head (a KerasHub causal LM's output embedding, or a `Dense`), the
            terms are computed from the models' last hidden states and heads a
            chunk of tokens at a time, with the same values and gradients to
            float round-off: on JAX no more than one chunk's logits exist at
            once (a 262,144-token vocabulary's batch of logits is 1 GiB per
            array), on TensorFlow and PyTorch the batch's logits are made at
            once. None: chunks of about 2^24 logits; a positive number: that
            many tokens per chunk; 0: the whole batch's logits from the
            models' outputs. With `compile(loss=...)` or `metrics`, or an
            offline teacher, the logits are made whole. Defaults to `None`
            (chunks of about 2^24 logits).
        name: str. The model name. Defaults to `"distiller"`.
        **kwargs: passed to `keras.Model`.

    Raises:
        ValueError: for models that are not `keras.Model`s, the same model
            (or shared weights) as teacher and student, mismatched
            vocabularies, weights out of range, several logits terms, a layer
            name that cannot be reached, or a projection of the wrong shape.

    Example:
    >>> distiller = Distiller(teacher, student)  # doctest: +SKIP
    >>> distiller.compile(optimizer="adam")  # doctest: +SKIP
    >>> distiller.fit(x, y, sample_weight=padding_mask, epochs=3)  # doctest: +SKIP
    >>> distiller.student.save("student.keras")  # doctest: +SKIP

    The student loss defaults to sparse categorical cross-entropy from
    logits; pass `compile(loss=...)` to change it (a cross-entropy named by
    string is applied to logits).

    Reference: arXiv 2510.06502; Hinton, Vinyals, Dean (2015).
    """

    def __init__(
        self,
        teacher,
        student,
        distillation_losses=None,
        distillation_loss_weights=None,
        student_loss_weight=0.5,
        logits_chunk_tokens=None,
        name="distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        _arguments.check_models(teacher, student)
        alpha = _arguments.check_weight(
            student_loss_weight, "student_loss_weight", upper=1.0
        )
        self.logits_chunk_tokens = _chunked.check_chunk(logits_chunk_tokens)
        terms = _arguments.as_terms(distillation_losses)
        weights = _arguments.term_weights(distillation_loss_weights, len(terms))
        self._student_loss_weight_value = alpha
        self._distillation_loss_weight_values = (
            None if distillation_loss_weights is None else weights
        )
        self.distillation_losses = terms
        self.teacher = teacher
        self.teacher.trainable = False
        self.student = student
        track_guide_state(student)
        self.student_loss_weight = self._scalar(alpha, "student_loss_weight")
        self.distillation_loss_weights = [
            self._scalar((1.0 - alpha) * w, f"distillation_loss_weight_{i}")
            for i, w in enumerate(weights)
        ]
        # Set by the terms' `build`: a `LogitsDistillation` gives the
        # temperature and the KD weight, each `FeatureDistillation` a projector.
        self.temperature = None
        self.kd_weight = None
        self.projectors = []
        self._build_terms()
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        for metric in dict.fromkeys(term.metric_name for term in terms):
            setattr(self, f"{metric}_tracker", keras.metrics.Mean(name=metric))
        self.guide_loss_tracker = keras.metrics.Mean(name="guide_loss")
        if teacher.built and student.built:
            self.built = True

    @property
    def num_classes(self):
        """The logits' width (labels lie in `[0, num_classes)`), or None."""
        for model in (self.student, self.teacher):
            try:
                width = model.outputs[0].shape[-1]
            except (AttributeError, IndexError, TypeError, ValueError):
                continue
            if width is not None:
                return int(width)
        return None

    def _logits_rank(self):
        """The rank of the student's logits, or None when unknown."""
        try:
            return len(self.student.outputs[0].shape)
        except (AttributeError, IndexError, TypeError, ValueError):
            return None

    def _backbone_size(self, name):
        """The smaller of the models' backbones' `name`, or None."""
        from keras_guide.adapters import backbone_of

        sizes = []
        for model in (self.student, self.teacher):
            try:
                value = getattr(backbone_of(model), name, None)
            except (ValueError, AttributeError):
                value = None
            if isinstance(value, (int, np.integer)):
                sizes.append(int(value))
        return min(sizes) if sizes else None

    @property
    def vocabulary_size(self):
        """The token vocabulary (token ids lie in `[0, V)`): the backbones'
        `vocabulary_size`, else the logits' width (a language model's)."""
        size = self._backbone_size("vocabulary_size")
        return size if size is not None else self.num_classes

    def check_data(self, x, y=None, sample_weight=None):
        """Checks a batch on the host: integer token ids in the vocabulary,
        segment ids in the segments, integer labels within the logits' width
        (the vocabulary of a language model, the classes of a classifier), the
        offline teacher's logits finite, sample weights finite, ≥ 0 and
        summable in float32.

        `fit`, `evaluate`, `predict` and the `*_on_batch` methods call it
        before any step runs (arrays whole, other data batch by batch as it
        is drawn), so a bad input gets this error on every backend and
        leaves the models untouched.

        Raises:
            ValueError: naming the input, its shape and the bad values.
        """
        _data_checks.check_batch(
            x,
            y,
            sample_weight,
            self.vocabulary_size,
            num_classes=self.num_classes,
            num_segments=self._backbone_size("num_segments"),
            token_model=self._backbone_size("vocabulary_size") is not None,
            logits_rank=self._logits_rank(),
        )
        self._warn_temperature(y)

    def _warn_temperature(self, y):
        """Says so when offline targets were stored at another temperature
        than the Distiller distils at: their log-normalizer does not apply,
        the teacher's tail beyond its top k is dropped and the top k
        renormalized (the loss is no longer the KL over k + 1 classes)."""
        if not isinstance(y, dict) or offline.TEMPERATURE not in y:
            return
        if self.temperature is None or getattr(self, "_warned_temperature", False):
            return
        stored = np.unique(
            np.asarray(keras.ops.convert_to_numpy(y[offline.TEMPERATURE]), np.float64)
        )
        # The term's own temperature, not the variable: JAX's fit and evaluate
        # hold the variables' values outside them while they run.
        current = next(
            float(term.temperature)
            for term in self.distillation_losses
            if hasattr(term, "temperature")
        )
        if np.allclose(stored, current):
            return
        self._warned_temperature = True
        warnings.warn(
            f"The offline teacher's top-k targets were stored at temperature "
            f"{stored.tolist()}, the Distiller distils at {current}: the teacher's "
            "tail is dropped and its top k renormalized, which overstates the "
            "teacher's confidence. Store them at the Distiller's temperature "
            "(teacher_top_k(..., temperature=τ)) or build the Distiller with "
            "LogitsDistillation(temperature=τ) of the targets.",
            stacklevel=3,
        )

    def check_settings(self):
        """Checks, on the host, the values training applies that may change
        after construction: `α`, each `β_i`, `τ` and the student's
        `GuideRegularizer` strengths (variables anyone can assign).

        Raises:
            ValueError: naming the value and its range.
        """
        _arguments.check_settings(self)

    def check_half_precision(self, x, y=None):
        """Runs the models that compute in float16 on one batch, before any
        training step, and refuses non-finite logits: a float16 forward pass
        that overflows (above 65,504) would turn every student weight NaN in
        the first step.

        Raises:
            FloatingPointError: naming the model, its dtype policy and what
                to use instead; nothing has been trained.
        """
        _half_precision.check_finite_logits(self.student, self.teacher, x, y)
        self._half_precision_checked = True

    def _scalar(self, value, name):
        return self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(value),
            dtype="float32",
            trainable=False,
            name=name,
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "distillation_losses": [
                keras.saving.serialize_keras_object(t) for t in self.distillation_losses
            ],
            "distillation_loss_weights": self._distillation_loss_weight_values,
            "student_loss_weight": self._student_loss_weight_value,
            "logits_chunk_tokens": self.logits_chunk_tokens,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        config["distillation_losses"] = [
            keras.saving.deserialize_keras_object(t)
            for t in config["distillation_losses"]
        ]
        return cls(**config)
