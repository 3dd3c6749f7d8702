"""The `Distiller`'s arguments, checked where they are given and before training.

At construction: the two models (Keras models, distinct, not sharing
weights, the teacher built, logits of one width), the terms and their
weights. Before training: the values the step applies that anyone may assign
after construction (`α`, each `β_i`, `τ`, the student's `GuideRegularizer`
strengths), since a variable's new value is never checked by Keras.
"""

import keras
import numpy as np

from keras_guide.distillation.terms import LogitsDistillation
from keras_guide.distillation.terms import from_keras_distillation_loss
from keras_guide.regularizers.guide_regularizer import check_strength
from keras_guide.regularizers.guide_regularizer import guide_regularizers


def check_weight(value, name, upper=None):
    """Returns `value` as a float, refusing a non-number, a non-finite or
    negative value, or one above `upper` (when given); `name` names it in
    the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"`{name}` must be a number. Received: {name}={value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (upper is not None and value > upper):
        bounds = f"in [0, {upper}]" if upper is not None else "finite and ≥ 0"
        raise ValueError(f"`{name}` must be {bounds}. Received: {name}={value}")
    return value


def check_models(teacher, student):
    """Refuses a teacher and student that are not Keras models, are the same
    model or share trainable weights, a teacher not yet built, or logits of
    two widths (where both widths are known)."""
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


def as_terms(distillation_losses):
    """The Distiller's terms from its `distillation_losses` argument (None:
    one `LogitsDistillation`), `keras.distillation` terms converted."""
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


def term_weights(distillation_loss_weights, count):
    """One checked weight per term (None: 1 each)."""
    if distillation_loss_weights is None:
        return [1.0] * count
    weights = list(distillation_loss_weights)
    if len(weights) != count:
        raise ValueError(
            "`distillation_loss_weights` needs one weight per "
            f"distillation loss ({count}). Received: "
            f"distillation_loss_weights={distillation_loss_weights!r}"
        )
    return [check_weight(w, "distillation_loss_weights") for w in weights]


def check_settings(distiller):
    """Checks `distiller`'s `α`, `β_i`, `τ` and its student's `GuideRegularizer`
    strengths as they are now (`Distiller.check_settings`).

    Args:
        distiller: `Distiller`. The Distiller whose variables to read.

    Raises:
        ValueError: naming the value and its range.
    """

    def read(variable):
        return float(keras.ops.convert_to_numpy(variable))

    check_weight(read(distiller.student_loss_weight), "student_loss_weight", upper=1.0)
    for weight in distiller.distillation_loss_weights:
        check_weight(read(weight), "distillation_loss_weights")
    if distiller.temperature is not None:
        value = read(distiller.temperature)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(
                f"`temperature` must be finite and > 0. Received: temperature="
                f"{value} (assigned after construction?)"
            )
    for regularizer in guide_regularizers(distiller.student):
        check_strength(
            read(regularizer.strength),
            "strength",
            " (a GuideRegularizer's, as training applies it)",
        )
