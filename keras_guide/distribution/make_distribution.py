"""`make_distribution`: the data- or model-parallel setting for
`keras-guide distill`."""

import contextlib

import keras

from keras_guide.distribution.sharding import sharding_layouts

_KINDS = ("data", "model")


def _check_kind(kind, model_parallel):
    if kind not in _KINDS:
        raise ValueError(f"`kind` must be one of {_KINDS}. Received: kind={kind!r}")
    if kind == "model":
        if (
            isinstance(model_parallel, bool)
            or not isinstance(model_parallel, int)
            or model_parallel < 1
        ):
            raise ValueError(
                "`kind='model'` needs `model_parallel`, the number of devices "
                "each weight is split over (a positive integer). Received: "
                f"model_parallel={model_parallel!r}"
            )
    elif model_parallel not in (None, 1):
        raise ValueError(
            "`model_parallel` applies to `kind='model'` only; data parallelism "
            "replicates every weight. Use kind='model' or drop it. Received: "
            f"kind={kind!r}, model_parallel={model_parallel!r}"
        )


def _tensorflow_strategy(kind, devices):
    import tensorflow as tf

    if kind == "model":
        raise NotImplementedError(
            "Model parallelism (`kind='model'`) needs `keras.distribution."
            "ModelParallel`, which Keras runs on the JAX backend only; "
            "`tf.distribute` has no equivalent for Keras 3 models. Run with "
            "KERAS_BACKEND=jax, or use kind='data' (MirroredStrategy)."
        )
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(
        devices=list(devices), cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


def make_distribution(
    kind, teacher=None, student=None, model_parallel=None, devices=None
):
    """Returns the distribution a distillation runs under: `with it.scope(): ...`.

    On JAX, `kind="data"` gives `keras.distribution.DataParallel` (weights
    replicated, each batch split over the devices) and `kind="model"` gives
    `keras.distribution.ModelParallel` on a `(batch, model)` mesh of shape
    `(len(devices) // model_parallel, model_parallel)`, with one
    `keras_guide.distribution.sharding_layouts` for teacher and student. On
    TensorFlow, `kind="data"` gives a `tf.distribute.MirroredStrategy` (what
    Keras' TensorFlow trainer distributes with). Both have `.scope()`.

    Variables take their layout when they are created: build the teacher and
    student inside `distribution.scope()`. For `kind="model"`, the `teacher`
    and `student` passed here only give paths and shapes, so they may be
    backbones built inside `keras.StatelessScope()`, which allocates nothing
    (`Llama3Backbone.from_preset(preset, load_weights=False)`, or the
    backbone class called on its config); a task model such as
    `Llama3CausalLM` cannot be built there (it creates variables), but its
    backbone's paths are its own. The global batch size must be a multiple of
    the mesh's `batch` axis.

    Args:
        kind: str. `"data"` or `"model"`.
        teacher: a KerasHub backbone or task model, or None. The teacher;
            needed for `kind="model"`. Defaults to `None`.
        student: a KerasHub backbone or task model, or None. The student,
            same family; needed for `kind="model"`. Defaults to `None`.
        model_parallel: int or None. For `kind="model"`, the number of devices
            each weight is split over; must divide the device count. Defaults
            to `None` (data parallelism; `kind="model"` needs a number).
        devices: list of str, or None. Device names
            (`keras.distribution.list_devices()` on JAX; logical device names
            such as `"/cpu:0"` on TensorFlow). Defaults to `None` (every
            accelerator: JAX: every device; TensorFlow: every GPU, else every
            logical CPU).

    Returns:
        A `keras.distribution.Distribution` (JAX) or a
        `tf.distribute.MirroredStrategy` (TensorFlow).

    Raises:
        NotImplementedError: on the PyTorch backend (Keras' distribution API
            does not support it), or `kind="model"` on TensorFlow.
        ValueError: an unknown `kind`, a missing or invalid `model_parallel`,
            one that does not divide the device count, missing models, or
            sizes the mesh does not divide (see `sharding_layouts`).

    Example:
    >>> # Llama 3 8B: 32 heads of 128 on 8 key/value heads; RoPE keeps 128.
    >>> sizes = dict(hidden_dim=1024, num_heads=8, num_key_value_heads=2)
    >>> with keras.StatelessScope():
    ...     plan = keras_hub.models.Llama3Backbone.from_preset(
    ...         preset, load_weights=False)
    ...     plan_student = keras_guide.build_student(plan, **sizes)
    >>> distribution = make_distribution(
    ...     "model", plan, plan_student, model_parallel=2)
    >>> with distribution.scope():
    ...     teacher = keras_hub.models.Llama3CausalLM.from_preset(preset)
    ...     student = keras_guide.build_student(teacher, **sizes)
    ...     keras_guide.guide(teacher, student)
    """
    _check_kind(kind, model_parallel)
    backend = keras.backend.backend()
    if backend == "torch":
        raise NotImplementedError(
            "keras.distribution (DataParallel, ModelParallel) does not support "
            "the PyTorch backend. Run `keras-guide distill --data-parallel` or "
            "`--model-parallel N` with KERAS_BACKEND=jax (or tensorflow for "
            "data parallelism), or launch plain PyTorch data parallelism "
            f"yourself. Received: kind={kind!r} on backend 'torch'"
        )
    if backend == "tensorflow":
        return _tensorflow_strategy(kind, devices)
    if backend != "jax":
        raise NotImplementedError(
            f"Distributed distillation supports the JAX and TensorFlow backends. "
            f"Received: backend {backend!r}"
        )
    devices = (
        list(devices) if devices is not None else keras.distribution.list_devices()
    )
    if kind == "data":
        return _fed_by_processes(keras.distribution.DataParallel(devices=devices))
    if teacher is None or student is None:
        raise ValueError(
            "`kind='model'` builds a layout map from the teacher and student; "
            "pass both (built inside `keras.StatelessScope()` if memory is short). "
            f"Received: teacher={type(teacher).__name__}, "
            f"student={type(student).__name__}"
        )
    if len(devices) % model_parallel:
        raise ValueError(
            f"`model_parallel` must divide the number of devices ({len(devices)}) "
            f"to form a (batch, model) mesh. Received: model_parallel={model_parallel}"
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_parallel, model_parallel), ("batch", "model"), devices
    )
    layouts = sharding_layouts(
        teacher, student, mesh, model_dim="model", batch_dim="batch"
    )
    return _fed_by_processes(
        keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")
    )


def _fed_by_processes(distribution):
    # Several processes feed their own rows of each batch
    # (`processes.local_rows`), which Keras then joins.
    distribution.auto_shard_dataset = False
    return distribution


@contextlib.contextmanager
def paused_distribution():
    """Runs its block with no distribution (models built there to read their
    shapes are laid out on no mesh); yields the one paused, restored after."""
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield current
    finally:
        keras.distribution.set_distribution(current)
