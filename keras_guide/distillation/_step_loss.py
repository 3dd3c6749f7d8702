"""The loss of a `Distiller` step: the outputs its terms read, and their sum.

At construction each term gets what it reads: the feature models that
return inner layers' hidden states in the same forward pass as the logits
(`_features`), the output heads where the logits' terms are computed from
the last hidden states chunk by chunk (`_chunked`), and each term's state.
Each step then runs the student once and the teacher once (not at all where
an offline teacher's targets replace it), hands every term its pair of
outputs and sums the weighted terms, the student loss and the student's
regularization losses (docs/method.md §6).
"""

import keras
from keras import ops

from keras_guide import _backend
from keras_guide.distillation import _chunked
from keras_guide.distillation import losses as kd
from keras_guide.distillation import offline
from keras_guide.distillation._features import feature_model
from keras_guide.distillation.terms import LogitsDistillation

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


class StepLoss(keras.Model):
    """The terms' inputs, built once (`_build_terms`), the training forward
    pass that returns them (`call`) and `compute_loss`: a base of the
    `Distiller`. (A `keras.Model` so that these methods keep the docstrings
    of Keras' own.)"""

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
