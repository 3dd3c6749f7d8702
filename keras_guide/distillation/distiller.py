"""`Distiller`: masked knowledge distillation of a teacher into a student."""

import keras
import numpy as np
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution

from keras_guide.distillation import losses as kd
from keras_guide.distillation import offline
from keras_guide.distillation._features import feature_model
from keras_guide.distillation.distillation_loss import FeatureDistillation
from keras_guide.distillation.distillation_loss import LogitsDistillation
from keras_guide.distillation.distillation_loss import from_keras_distillation_loss
from keras_guide.regularizers import track_guide_state

# Cross-entropies named by string are applied to logits: the Distiller's
# student must output logits for the KD term, so a probability-space loss
# would silently be wrong.
_LOGIT_LOSSES = {
    "sparse_categorical_crossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(
        from_logits=True
    ),
    "categorical_crossentropy": lambda: keras.losses.CategoricalCrossentropy(
        from_logits=True
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
    reaches layers inside nested models (KerasHub backbones).

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
        distillation_losses: a `LogitsDistillation`, a `FeatureDistillation`
            or a list of them (their `keras.distillation` namesakes are
            accepted too); at most one `LogitsDistillation`. Defaults to
            `LogitsDistillation()` (`τ = 2`).
        distillation_loss_weights: one weight per distillation loss. Defaults
            to 1 each.
        student_loss_weight: `α` in `[0, 1]`. Defaults to 0.5, so by default
            `L = 0.5 · CE + 0.5 · τ² · KL`.
        name: the model name.
        **kwargs: passed to `keras.Model`.

    Raises:
        ValueError: for models that are not `keras.Model`s, mismatched
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
        name="distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        for role, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, keras.Model):
                raise ValueError(
                    f"`{role}` must be a `keras.Model` returning logits. "
                    f"Received: {role} of type {type(model).__name__}"
                )
        _check_vocabulary(teacher, student)
        alpha = _check_weight(student_loss_weight, "student_loss_weight", upper=1.0)

        if distillation_losses is None:
            terms = [LogitsDistillation()]
        elif isinstance(distillation_losses, (list, tuple)):
            terms = [from_keras_distillation_loss(t) for t in distillation_losses]
        else:
            terms = [from_keras_distillation_loss(distillation_losses)]
        if not terms:
            raise ValueError(
                "`distillation_losses` must hold at least one term; for "
                "training on labels alone, fit the student directly. "
                f"Received: distillation_losses={distillation_losses!r}"
            )
        if distillation_loss_weights is None:
            weights = [1.0] * len(terms)
        else:
            weights = list(distillation_loss_weights)
            if len(weights) != len(terms):
                raise ValueError(
                    "`distillation_loss_weights` needs one weight per "
                    f"distillation loss ({len(terms)}). Received: "
                    f"distillation_loss_weights={distillation_loss_weights!r}"
                )
            weights = [
                _check_weight(w, "distillation_loss_weights") for w in weights
            ]
        logits_terms = [t for t in terms if isinstance(t, LogitsDistillation)]
        if len(logits_terms) > 1:
            raise ValueError(
                "At most one `LogitsDistillation` may be given (the KD term "
                "has one temperature). Received: "
                f"{len(logits_terms)} LogitsDistillation terms"
            )

        self._student_loss_weight_value = alpha
        self._distillation_loss_weight_values = (
            None if distillation_loss_weights is None else weights
        )
        self.distillation_losses = terms
        self.teacher = teacher
        self.teacher.trainable = False
        self.student = student
        track_guide_state(student)

        def scalar(value, weight_name):
            return self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(value),
                dtype="float32",
                trainable=False,
                name=weight_name,
            )

        self.student_loss_weight = scalar(alpha, "student_loss_weight")
        self.distillation_loss_weights = [
            scalar((1.0 - alpha) * w, f"distillation_loss_weight_{i}")
            for i, w in enumerate(weights)
        ]
        self._logits_index = None
        self.temperature = None
        self.kd_weight = None
        if logits_terms:
            self._logits_index = terms.index(logits_terms[0])
            self.kd_weight = self.distillation_loss_weights[self._logits_index]
            self.temperature = scalar(logits_terms[0].temperature, "temperature")

        self._feature_indices = [
            i for i, t in enumerate(terms) if isinstance(t, FeatureDistillation)
        ]
        self.projectors = []
        helpers = {"student": None, "teacher": None}
        if self._feature_indices:
            features = [terms[i] for i in self._feature_indices]
            helpers["student"] = feature_model(
                student, [t.student_layer_name for t in features], "student"
            )
            helpers["teacher"] = feature_model(
                teacher, [t.teacher_layer_name for t in features], "teacher"
            )
            student_states = helpers["student"].output["hidden_states"]
            teacher_states = helpers["teacher"].output["hidden_states"]
            for i, (term, h_s, h_t) in enumerate(
                zip(features, student_states, teacher_states)
            ):
                self.projectors.append(
                    _projector(term, h_s.shape[-1], h_t.shape[-1], i)
                )
        self._features = _Untracked(**helpers)

        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        if self._logits_index is not None:
            self.kd_loss_tracker = keras.metrics.Mean(name="kd_loss")
        if self._feature_indices:
            self.hidden_loss_tracker = keras.metrics.Mean(name="hidden_loss")
        self.guide_loss_tracker = keras.metrics.Mean(name="guide_loss")
        if teacher.built and student.built:
            self.built = True

    def call(self, inputs, training=None):
        """Runs the student. During training with feature terms, also returns
        its hidden states (`{"output", "hidden_states"}`) so the loss needs no
        second forward pass."""
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

    def _teacher_outputs(self, x):
        """Teacher logits (and hidden states), float32, without gradient."""
        model = self._features.teacher or self.teacher
        outputs = model(x, training=False)
        return keras.tree.map_structure(
            lambda t: ops.stop_gradient(ops.cast(t, "float32")), outputs
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        labels, top_k = offline.split_targets(y)
        if y_pred is None:
            y_pred = self(x, training=training)
        features = self._features
        if features.student is not None and not isinstance(y_pred, dict):
            y_pred = features.student(x, training=training)
        if isinstance(y_pred, dict):
            student_logits = y_pred["output"]
            student_states = y_pred["hidden_states"]
        else:
            student_logits, student_states = y_pred, []
        student_logits = ops.cast(student_logits, "float32")

        total = ops.zeros((), "float32")
        if labels is not None:
            student_loss = kd.token_mean(
                self._student_loss_values(labels, student_logits), sample_weight
            )
            total = total + self.student_loss_weight * student_loss
        else:
            student_loss = ops.zeros((), "float32")

        needs_teacher_logits = self._logits_index is not None and top_k is None
        teacher = {}
        if needs_teacher_logits or self._feature_indices:
            teacher = self._teacher_outputs(x)
            if not isinstance(teacher, dict):
                teacher = {"output": teacher, "hidden_states": []}

        results = {}
        if self._logits_index is not None:
            if top_k is None:
                kd_value = kd.kd_loss(
                    teacher["output"],
                    student_logits,
                    self.temperature,
                    sample_weight,
                )
            else:
                values, indices, log_normalizer, cached_temperature = top_k
                kd_value = kd.top_k_kd_loss(
                    values, indices, student_logits, self.temperature,
                    sample_weight, log_normalizer, cached_temperature,
                )
            total = total + self.kd_weight * kd_value
            results["kd"] = kd_value

        if self._feature_indices:
            hidden_total = ops.zeros((), "float32")
            for j, index in enumerate(self._feature_indices):
                h_s = ops.cast(student_states[j], "float32")
                projector = self.projectors[j]
                if projector is not None:
                    h_s = projector(h_s)
                value = kd.hidden_state_loss(
                    h_s, teacher["hidden_states"][j], sample_weight
                )
                hidden_total = hidden_total + value
                total = total + self.distillation_loss_weights[index] * value
            results["hidden"] = hidden_total

        regularization = [ops.cast(loss, "float32") for loss in self.losses]
        guide_loss = sum(regularization, ops.zeros((), "float32"))
        total = total + guide_loss

        batch = ops.shape(student_logits)[0]
        self.student_loss_tracker.update_state(student_loss, sample_weight=batch)
        if "kd" in results:
            self.kd_loss_tracker.update_state(results["kd"], sample_weight=batch)
        if "hidden" in results:
            self.hidden_loss_tracker.update_state(results["hidden"], sample_weight=batch)
        self.guide_loss_tracker.update_state(guide_loss, sample_weight=batch)
        # Keras' trainers expect `compute_loss` to return the per-replica share
        # under `tf.distribute` (they sum replica gradients and unscale the
        # logged loss); a no-op on one device and on the other backends.
        return scale_loss_for_distribution(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels, _ = offline.split_targets(y)
        if isinstance(y_pred, dict):
            y_pred = y_pred["output"]
        return super().compute_metrics(x, labels, y_pred, sample_weight)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "distillation_losses": [
                keras.saving.serialize_keras_object(t)
                for t in self.distillation_losses
            ],
            "distillation_loss_weights": self._distillation_loss_weight_values,
            "student_loss_weight": self._student_loss_weight_value,
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


def _check_vocabulary(teacher, student):
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


def _projector(term, d_student, d_teacher, index):
    """The learnable map `h_S ↦ h_S P + b` from the student's width to the
    teacher's, or `None` for equal widths and no projection."""
    if term.projection is None and d_student == d_teacher:
        return None
    if term.projection is None:
        kernel = np.eye(d_student, d_teacher)
        bias = np.zeros((d_teacher,))
    else:
        if term.projection.shape != (d_teacher, d_student):
            raise ValueError(
                "The projection of `FeatureDistillation("
                f"teacher_layer_name={term.teacher_layer_name!r}, "
                f"student_layer_name={term.student_layer_name!r})` must have "
                f"shape (d_teacher, d_student) = ({d_teacher}, {d_student}), "
                "the widths of those layers' outputs; pass the GUIDE report of "
                "this teacher and student. Received: projection of shape "
                f"{term.projection.shape}"
            )
        kernel = term.projection.T
        bias = term.projection_mean
    projector = keras.layers.Dense(
        d_teacher, dtype="float32", name=f"projector_{index}"
    )
    projector.build((None, d_student))
    projector.kernel.assign(kernel.astype("float32"))
    projector.bias.assign(bias.astype("float32"))
    return projector
