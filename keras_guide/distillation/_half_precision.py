"""Guards against a float16 model's overflow in the `Distiller`.

float16 holds no value above 65,504: a teacher's or student's logits past it
become Inf, the loss NaN, and one step makes every student weight NaN, after
which `fit` would go on training nothing. So the models that compute in
float16 are run on the first batch before any step (`check_finite_logits`),
and `fit` stops at the first non-finite loss (`StopOnNonFinite`).
"""

import keras
import numpy as np

from keras_guide.distillation import offline


def half_policy(model):
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


def check_finite_logits(student, teacher, x, y=None):
    """Runs the models among `student` and `teacher` that compute in float16
    on the batch `x` and refuses non-finite logits
    (`Distiller.check_half_precision`); the teacher is not run where `y`
    holds an offline teacher's targets.

    Args:
        student: `keras.Model`. The Distiller's student.
        teacher: `keras.Model`. The Distiller's teacher.
        x: the batch's inputs.
        y: the batch's targets, or None. Defaults to `None`.

    Raises:
        FloatingPointError: naming the model, its dtype policy and what
            to use instead; nothing has been trained.
    """
    _, offline_teacher = offline.split_targets(y)
    roles = [("student", student)]
    if offline_teacher is None:
        roles.append(("teacher", teacher))
    for role, model in roles:
        policy = half_policy(model)
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


class StopOnNonFinite(keras.callbacks.Callback):
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
