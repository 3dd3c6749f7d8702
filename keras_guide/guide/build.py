"""Students of a teacher's family: `build_student`."""

from keras_guide.adapters import adapter_for
from keras_guide.adapters import backbone_of


def build_student(teacher, name=None, dtype=None, tie_embeddings=None, **sizes):
    """Builds a randomly initialized student from the teacher's config.

    `sizes` uses generic names (`hidden_dim`, `num_layers`, `num_heads`,
    `num_key_value_heads`, `intermediate_dim`, `head_dim`,
    `max_sequence_length`), translated to the family's own argument names;
    values are in the backbone config's own units. A task-model teacher gives
    a task model of the same class sharing the teacher's preprocessor.

    Args:
        teacher: a `keras_hub.models.Backbone` or a KerasHub task model.
        name: str or None. The student's name. Defaults to `None` (the
            teacher backbone's name with `"_student"` appended).
        dtype: str, `keras.DTypePolicy` or None. The student's dtype policy;
            `None` keeps the teacher's. Defaults to `None`.
        tie_embeddings: bool or None. Whether the student's output head is its
            token table; `None` keeps the teacher's choice. An untied student
            of a tied teacher gets the teacher's final norm gain folded into
            its own head (exact; costs `V · d_S` parameters). Only for
            families that have the option (Llama, Qwen, ...). Defaults to
            `None`.
        **sizes: int. The student's sizes, by the generic names above.

    Returns:
        The student, built, of the teacher's class, trainable even when the
        teacher is frozen.

    Raises:
        ValueError: a size the family does not have, or `tie_embeddings` for a
            family that always ties.
    """
    t_backbone = backbone_of(teacher)
    adapter = adapter_for(t_backbone)
    unknown = sorted(set(sizes) - set(adapter.config_keys))
    if unknown:
        raise ValueError(
            f"The {adapter.family} family has no size {unknown}; it accepts "
            f"{sorted(adapter.config_keys)}. Received: {sizes}"
        )
    config = t_backbone.get_config()
    for key, value in sizes.items():
        config[adapter.config_keys[key]] = value
    if adapter.tie_option is not None:
        # Some backbones (Llama) leave the tie out of their config.
        config[adapter.tie_option] = (
            adapter.tied(t_backbone) if tie_embeddings is None else bool(tie_embeddings)
        )
    elif tie_embeddings is not None and bool(tie_embeddings) != adapter.tied(
        t_backbone
    ):
        always = (
            "ties its output head to"
            if adapter.tied(t_backbone)
            else "keeps its output head apart from"
        )
        raise ValueError(
            f"The {adapter.family} family always {always} the token table. "
            f"Received: tie_embeddings={tie_embeddings!r}"
        )
    config["name"] = name or f"{t_backbone.name}_student"
    # A frozen teacher (the usual case beside a Distiller) must not give a
    # frozen student: its config carries `trainable=False` on some backends.
    config["trainable"] = True
    if dtype is not None:
        config["dtype"] = dtype
    s_backbone = type(t_backbone).from_config(config)
    if t_backbone is teacher:
        return s_backbone
    task_config = teacher.get_config()
    task_config.update(
        backbone=s_backbone,
        preprocessor=teacher.preprocessor,
        name=config["name"] + "_task",
        trainable=True,
    )
    return type(teacher).from_config(task_config)
