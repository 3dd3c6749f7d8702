"""`Distiller`: masked knowledge distillation of a teacher into a student."""

import contextlib
import warnings

import keras
import numpy as np
from keras import ops

from keras_guide import _backend
from keras_guide.distillation import _chunked
from keras_guide.distillation import _data_checks
from keras_guide.distillation import losses as kd
from keras_guide.distillation import offline
from keras_guide.distillation._features import feature_model
from keras_guide.distillation.terms import LogitsDistillation
from keras_guide.distillation.terms import from_keras_distillation_loss
from keras_guide.regularizers import track_guide_state
from keras_guide.regularizers.guide_regularizer import check_strength
from keras_guide.regularizers.guide_regularizer import guide_regularizers

# Cross-entropies named by string are applied to logits: the Distiller's
# student must output logits for the KD term, so a probability-space loss
# would silently be wrong.
_LOGIT_LOSSES = {
    "sparse_categorical_crossentropy": (
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ),
    "categorical_crossentropy": (
        lambda: keras.losses.CategoricalCrossentropy(from_logits=True)
    ),
}


class _Untracked:
    """Holds helper models outside Keras' attribute tracking.

    The feature models share every layer with the teacher and the student,
    which the Distiller already tracks; tracking them again would save the
    same weights twice.
    """

    def __init__(self, **models):
        self.__dict__.update(models)


def _check_weight(value, name, upper=None):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"`{name}` must be a number. Received: {name}={value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (upper is not None and value > upper):
        bounds = f"in [0, {upper}]" if upper is not None else "finite and ≥ 0"
        raise ValueError(f"`{name}` must be {bounds}. Received: {name}={value}")
    return value


@keras.saving.register_keras_serializable(package="keras_guide")
class Distiller(keras.Model):
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
        _check_models(teacher, student)
        alpha = _check_weight(student_loss_weight, "student_loss_weight", upper=1.0)
        self.logits_chunk_tokens = _chunked.check_chunk(logits_chunk_tokens)
        terms = _as_terms(distillation_losses)
        weights = _term_weights(distillation_loss_weights, len(terms))
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

        def read(variable):
            return float(keras.ops.convert_to_numpy(variable))

        _check_weight(read(self.student_loss_weight), "student_loss_weight", upper=1.0)
        for weight in self.distillation_loss_weights:
            _check_weight(read(weight), "distillation_loss_weights")
        if self.temperature is not None:
            value = read(self.temperature)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(
                    f"`temperature` must be finite and > 0. Received: temperature="
                    f"{value} (assigned after construction?)"
                )
        for regularizer in guide_regularizers(self.student):
            check_strength(
                read(regularizer.strength),
                "strength",
                " (a GuideRegularizer's, as training applies it)",
            )

    def check_half_precision(self, x, y=None):
        """Runs the models that compute in float16 on one batch, before any
        training step, and refuses non-finite logits: a float16 forward pass
        that overflows (above 65,504) would turn every student weight NaN in
        the first step.

        Raises:
            FloatingPointError: naming the model, its dtype policy and what
                to use instead; nothing has been trained.
        """
        _, offline_teacher = offline.split_targets(y)
        roles = [("student", self.student)]
        if offline_teacher is None:
            roles.append(("teacher", self.teacher))
        for role, model in roles:
            policy = _half_policy(model)
            if policy is None:
                continue
            logits = model(x, training=False)
            if isinstance(logits, dict):
                logits = logits.get("logits", next(iter(logits.values())))
            values = np.asarray(keras.ops.convert_to_numpy(logits), np.float64)
            bad = int(np.count_nonzero(~np.isfinite(values)))
            if bad:
                raise FloatingPointError(
                    f"The {role}'s logits on the first batch are not finite ({bad} "
                    f"of {values.size} values NaN or Inf): its dtype policy "
                    f"{policy} computes in float16, whose values overflow above "
                    "65,504, and training would make every student weight NaN. "
                    f"Nothing was trained: run the {role} in float32 or bfloat16 "
                    "(dtype='bfloat16', or the 'mixed_bfloat16' policy)."
                )
        self._half_precision_checked = True

    def _before_training(self, x, y, sample_weight, batch_size=None):
        """The checks of the settings and the first batch (float16 models
        only) before the first step; returns `x`, re-chained where drawing
        its first batch consumed it."""
        self.check_settings()
        if getattr(self, "_half_precision_checked", False) or not any(
            _half_policy(m) for m in (self.student, self.teacher)
        ):
            return x
        first, x = _data_checks.first_batch(x, y, sample_weight, batch_size)
        if first is not None:
            self.check_data(*first)
            self.check_half_precision(first[0], first[1])
        return x

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        sample_weight=None,
        **kwargs,
    ):
        x = self._before_training(x, y, sample_weight, batch_size)
        check = _data_checks.Recorder(self.check_data)
        x = _data_checks.checked(x, y, sample_weight, check)
        if isinstance(validation_data, tuple):
            self.check_data(*validation_data)
        elif validation_data is not None:
            validation_data = _data_checks.checked(validation_data, None, None, check)
        callbacks = [*(callbacks or []), _StopOnNonFinite(self)]
        with self._guarded(check):
            return super().fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                verbose=verbose,
                callbacks=callbacks,
                validation_split=validation_split,
                validation_data=validation_data,
                sample_weight=sample_weight,
                **kwargs,
            )

    def evaluate(
        self,
        x=None,
        y=None,
        batch_size=None,
        verbose="auto",
        sample_weight=None,
        **kwargs,
    ):
        check = _data_checks.Recorder(self.check_data)
        x = _data_checks.checked(x, y, sample_weight, check)
        with self._guarded(check):
            return super().evaluate(
                x,
                y,
                batch_size=batch_size,
                verbose=verbose,
                sample_weight=sample_weight,
                **kwargs,
            )

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        check = _data_checks.Recorder(self.check_data)
        x = _data_checks.checked(x, None, None, check)
        with self._guarded(check):
            return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)

    @contextlib.contextmanager
    def _guarded(self, check):
        """Leaves the Distiller usable after an error: puts back what a failed
        JAX run emptied (`_backend`) and drops the compiled step functions (a
        `tf.function` whose first trace failed would refuse to create the
        variables it still needs); a check that failed inside TensorFlow's
        input pipeline is raised as itself."""
        with _backend.restore_variables_on_error(self):
            try:
                yield
            except BaseException as error:
                self.train_function = None
                self.test_function = None
                self.predict_function = None
                check.reraise(error)
                raise

    def train_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        self.check_data(x, y, sample_weight)
        self._before_training(x, y, sample_weight)
        return super().train_on_batch(x, y, sample_weight=sample_weight, **kwargs)

    def test_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        self.check_data(x, y, sample_weight)
        return super().test_on_batch(x, y, sample_weight=sample_weight, **kwargs)

    def predict_on_batch(self, x):
        self.check_data(x)
        return super().predict_on_batch(x)

    def _scalar(self, value, name):
        return self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(value),
            dtype="float32",
            trainable=False,
            name=name,
        )

    def _build_terms(self):
        """Builds the one-pass feature models the layer terms read, then each
        term's state, in order."""
        terms = self.distillation_losses
        layers = [term.layer_names() for term in terms]
        pairs = [names for names in layers if names is not None]
        heads = self._output_heads(terms, layers)
        models = {
            role: heads[role][0] if heads else getattr(self, role)
            for role in ("student", "teacher")
        }
        helpers = {"student": None, "teacher": None}
        widths = iter(())
        if pairs:
            helpers["student"] = feature_model(
                models["student"], [s for _, s in pairs], "student"
            )
            helpers["teacher"] = feature_model(
                models["teacher"], [t for t, _ in pairs], "teacher"
            )
            widths = zip(
                helpers["teacher"].output["hidden_states"],
                helpers["student"].output["hidden_states"],
            )
        states = []
        for term, weight, names in zip(terms, self.distillation_loss_weights, layers):
            h_t, h_s = next(widths) if names is not None else (None, None)
            states.append(
                term.build(
                    self,
                    weight,
                    None if h_t is None else h_t.shape[-1],
                    None if h_s is None else h_s.shape[-1],
                )
            )
        self._features = _Untracked(**helpers)
        self._terms = _Untracked(layers=layers, states=states)
        self._heads = (
            None
            if heads is None
            else _Untracked(
                trunks=models,
                student=heads["student"][1],
                teacher=heads["teacher"][1],
                logits_term=next(i for i, names in enumerate(layers) if names is None),
            )
        )

    def _output_heads(self, terms, layers):
        """`{"student": (trunk, head), "teacher": ...}` when training may
        compute the logits' terms from hidden states (`_chunked`): chunking
        is on, both models end in a per-token head, and the one term of the
        logits is a `LogitsDistillation`; else None."""
        logits_terms = [t for t, names in zip(terms, layers) if names is None]
        if (
            self.logits_chunk_tokens == 0
            or len(logits_terms) != 1
            or type(logits_terms[0]) is not LogitsDistillation
        ):
            return None
        heads = {
            role: _chunked.output_head(getattr(self, role))
            for role in ("student", "teacher")
        }
        return heads if all(heads.values()) else None

    def call(self, inputs, training=None):
        """Runs the student. During training with layer terms, also returns
        its hidden states (`{"output", "hidden_states"}`) so the loss needs no
        second forward pass; with output heads (`logits_chunk_tokens`), its
        last hidden states instead of the logits (`{"pre_head", ...}`)."""
        if training and self._heads is not None:
            # The last hidden states, not the logits: `compute_loss` makes
            # the logits' terms from them chunk by chunk (`_chunked`).
            outputs = (self._features.student or self._heads.trunks["student"])(
                inputs, training=True
            )
            if not isinstance(outputs, dict):
                outputs = {"output": outputs, "hidden_states": []}
            if _backend.has_compiled_metrics(self):  # they read the logits
                return {
                    "output": self._logits("student", outputs["output"]),
                    "hidden_states": outputs["hidden_states"],
                }
            return {
                "pre_head": outputs["output"],
                "hidden_states": outputs["hidden_states"],
            }
        if training and self._features.student is not None:
            return self._features.student(inputs, training=True)
        return self.student(inputs, training=training)

    def _student_loss_values(self, labels, logits):
        loss = self.loss
        if loss is None:
            return kd.sparse_cross_entropy(labels, logits)
        if isinstance(loss, str) and loss in _LOGIT_LOSSES:
            loss = _LOGIT_LOSSES[loss]()
        else:
            loss = keras.losses.get(loss)
        if isinstance(loss, keras.losses.Loss):
            return loss.call(labels, logits)
        return loss(labels, logits)

    def _student_outputs(self, x, y_pred, training):
        """`(logits, hidden states, last hidden states)`: the logits float32,
        or None where training gave the last hidden states instead (their
        own dtype; None otherwise)."""
        if y_pred is None:
            y_pred = self(x, training=training)
        if self._features.student is not None and not isinstance(y_pred, dict):
            y_pred = self._features.student(x, training=training)
            if self._heads is not None:
                y_pred = {
                    "pre_head": y_pred["output"],
                    "hidden_states": y_pred["hidden_states"],
                }
        if not isinstance(y_pred, dict):
            y_pred = {"output": y_pred, "hidden_states": []}
        states = [ops.cast(t, "float32") for t in y_pred["hidden_states"]]
        if "pre_head" in y_pred:
            return None, states, y_pred["pre_head"]
        return ops.cast(y_pred["output"], "float32"), states, None

    def _teacher_outputs(self, x, offline_teacher):
        """`(logits, hidden states, last hidden states)` without gradient, as
        `_student_outputs` (the trunk's output instead of the logits where
        the Distiller has output heads); not run (`(None, [], None)`) when
        every term reads `offline_teacher` instead."""
        if not any(
            names is not None
            or offline_teacher is None
            or not term.accepts_offline_teacher
            for term, names in zip(self.distillation_losses, self._terms.layers)
        ):
            return None, [], None
        model = self._features.teacher or (
            self.teacher if self._heads is None else self._heads.trunks["teacher"]
        )
        outputs = keras.tree.map_structure(ops.stop_gradient, model(x, training=False))
        if not isinstance(outputs, dict):
            outputs = {"output": outputs, "hidden_states": []}
        states = [ops.cast(t, "float32") for t in outputs["hidden_states"]]
        if self._heads is not None:
            return None, states, outputs["output"]
        return ops.cast(outputs["output"], "float32"), states, None

    def _logits(self, role, pre_head):
        """The whole batch's logits from the last hidden states, float32."""
        logits = ops.cast(
            _chunked.head_logits(getattr(self._heads, role), pre_head), "float32"
        )
        return logits if role == "student" else ops.stop_gradient(logits)

    def _term_inputs(self, student, teacher, offline_teacher):
        """Yields each term with its weight, state and the outputs it reads."""
        student_states, teacher_states = iter(student[1]), iter(teacher[1])
        for term, weight, names, state in zip(
            self.distillation_losses,
            self.distillation_loss_weights,
            self._terms.layers,
            self._terms.states,
        ):
            if names is not None:
                outputs = next(teacher_states), next(student_states)
            elif offline_teacher is not None and term.accepts_offline_teacher:
                outputs = offline_teacher, student[0]
            else:
                outputs = teacher[0], student[0]
            yield term, weight, state, outputs

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        labels, offline_teacher = offline.split_targets(y)
        student = self._student_outputs(x, y_pred, training)
        teacher = self._teacher_outputs(x, offline_teacher)
        # From the hidden states chunk by chunk where the logits' terms are
        # the default CE and the live teacher's KD; else the logits, whole.
        chunked = (
            student[2] is not None
            and labels is not None
            and self.loss is None
            and offline_teacher is None
        )
        if student[2] is not None and not chunked:
            student = (self._logits("student", student[2]), *student[1:])
        if teacher[2] is not None and not chunked:
            teacher = (self._logits("teacher", teacher[2]), *teacher[1:])
        total = ops.zeros((), "float32")
        student_loss = ops.zeros((), "float32")
        values = {}
        if chunked:
            index = self._heads.logits_term
            term = self.distillation_losses[index]
            temperature = self._terms.states[index]
            part, student_loss, values[term.metric_name] = _chunked.head_losses(
                student[2],
                self._heads.student,
                teacher[2],
                self._heads.teacher,
                labels,
                sample_weight,
                term.temperature if temperature is None else temperature,
                self.student_loss_weight,
                self.distillation_loss_weights[index],
                self.logits_chunk_tokens,
            )
            total = total + part
        elif labels is not None:
            student_loss = kd.token_mean(
                self._student_loss_values(labels, student[0]), sample_weight
            )
            total = total + self.student_loss_weight * student_loss
        values = {"student_loss": student_loss, **values}
        for term, weight, state, outputs in self._term_inputs(
            student, teacher, offline_teacher
        ):
            if chunked and term is self.distillation_losses[index]:
                continue  # computed above
            value = term.compute_loss(*outputs, sample_weight, state)
            total = total + weight * value
            name = term.metric_name
            values[name] = values[name] + value if name in values else value
        regularization = [ops.cast(loss, "float32") for loss in self.losses]
        values["guide_loss"] = sum(regularization, ops.zeros((), "float32"))
        total = total + values["guide_loss"]
        batch = ops.shape(student[0] if student[2] is None else student[2])[0]
        for name, value in values.items():
            getattr(self, f"{name}_tracker").update_state(value, sample_weight=batch)
        return _backend.scale_loss_for_distribution(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels, _ = offline.split_targets(y)
        if isinstance(y_pred, dict):
            # No logits where training made the last hidden states instead,
            # which it does only without compiled metrics.
            y_pred = y_pred.get("output")
        return super().compute_metrics(x, labels, y_pred, sample_weight)

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


def _half_policy(model):
    """The name of the dtype policy `model` (or its backbone) computes in
    float16 with, else None."""
    from keras_guide.adapters import backbone_of

    try:
        models = [model, backbone_of(model)]
    except (ValueError, AttributeError):
        models = [model]
    models += list(getattr(model, "layers", []))
    for item in models:
        policy = getattr(item, "dtype_policy", None)
        if getattr(policy, "compute_dtype", None) == "float16":
            return policy.name
    return None


def _check_models(teacher, student):
    for role, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"`{role}` must be a `keras.Model` returning logits. "
                f"Received: {role} of type {type(model).__name__}"
            )
    if teacher is student:
        raise ValueError(
            f"`teacher` and `student` are the same model (`{teacher.name}`): the "
            "teacher is frozen, so the student would be too and `fit` would "
            "train nothing. Pass a student of its own (keras_guide.build_student"
            "(teacher, ...), or keras.models.clone_model(teacher))."
        )
    frozen = {id(v) for v in teacher.weights}
    shared = [v.path for v in student.trainable_weights if id(v) in frozen]
    if shared:
        raise ValueError(
            f"The student shares {len(shared)} trainable weights with the teacher "
            f"(e.g. `{shared[0]}`), which the Distiller freezes: they would never "
            "train, and training the others would change the teacher's outputs. "
            "Give the student weights of its own (keras.models.clone_model)."
        )
    if not teacher.built or not teacher.weights:
        raise ValueError(
            f"The teacher `{teacher.name}` is not built: it has no weights yet, "
            "so it would be built on the first batch with random values and "
            "distilled from those. Build it and load its trained weights first "
            "(a functional or KerasHub model is built when made; call a "
            "subclassed one on a batch, then `load_weights`)."
        )
    try:
        v_teacher = teacher.outputs[0].shape[-1]
        v_student = student.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        return
    if v_teacher is not None and v_student is not None and v_teacher != v_student:
        raise ValueError(
            "The teacher and the student must output logits over the same "
            f"vocabulary (share the tokenizer). Received: teacher output shape "
            f"{tuple(teacher.outputs[0].shape)}, student output shape "
            f"{tuple(student.outputs[0].shape)}"
        )


def _as_terms(distillation_losses):
    if distillation_losses is None:
        return [LogitsDistillation()]
    if isinstance(distillation_losses, (list, tuple)):
        terms = [from_keras_distillation_loss(t) for t in distillation_losses]
    else:
        terms = [from_keras_distillation_loss(distillation_losses)]
    if not terms:
        raise ValueError(
            "`distillation_losses` must hold at least one term; for "
            "training on labels alone, fit the student directly. "
            f"Received: distillation_losses={distillation_losses!r}"
        )
    return terms


def _term_weights(distillation_loss_weights, count):
    if distillation_loss_weights is None:
        return [1.0] * count
    weights = list(distillation_loss_weights)
    if len(weights) != count:
        raise ValueError(
            "`distillation_loss_weights` needs one weight per "
            f"distillation loss ({count}). Received: "
            f"distillation_loss_weights={distillation_loss_weights!r}"
        )
    return [_check_weight(w, "distillation_loss_weights") for w in weights]


class _StopOnNonFinite(keras.callbacks.Callback):
    """Ends `fit` with an error when a step's loss is NaN or Inf.

    A step with a non-finite loss has already written non-finite gradients
    into the student; going on would train nothing and `fit` would return as
    if it had. The usual cause is a float16 teacher whose logits overflow.
    """

    def __init__(self, distiller):
        super().__init__()
        self._distiller = distiller

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(float(loss)):
            return
        dtypes = {
            role: getattr(getattr(model, "dtype_policy", None), "name", "?")
            for role, model in (
                ("teacher", self._distiller.teacher),
                ("student", self._distiller.student),
            )
        }
        raise FloatingPointError(
            f"The distillation loss became {float(loss)} at batch {batch}; the "
            "student's weights are no longer finite (restore them from a "
            f"checkpoint). Dtype policies: teacher {dtypes['teacher']}, student "
            f"{dtypes['student']}: a float16 model's logits overflow above 65,504, "
            "run it in bfloat16 or float32; otherwise lower the learning rate."
        )
