"""One `keras.distribution.LayoutMap` that shards a teacher and its student alike.

A GUIDE student is built from its teacher's config, so both backbones name
their weights with the same paths (`transformer_layer_0/self_attention/query/
kernel`) and differ only in sizes. One layout map therefore covers both; what
can differ is whether each model's sizes divide by the mesh, and that is checked
for every weight of both models before any variable is created.

Reference: arXiv 2510.06502.
"""

import math
import re

import keras

from keras_guide.adapters import backbone_of
from keras_guide.adapters import shared_adapter
from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Table
from keras_guide.adapters.base import Write

# Axis rules that index whole attention heads or MLP neurons: the axes Megatron
# (Shoeybi et al. 2019) splits so that each device computes its own heads and
# neurons and one all-reduce after each writing kernel joins them.
_PARALLEL_RULES = ("heads", "kv_heads", "neurons")


def _axis_names(axis):
    if axis is None:
        return ()
    return (axis,) if isinstance(axis, str) else tuple(axis)


def _mesh_size(device_mesh, axis):
    sizes = dict(zip(device_mesh.axis_names, device_mesh.shape))
    return math.prod(sizes[name] for name in _axis_names(axis))


def _adapter_layout(backbones, adapter, device_mesh, model_dim):
    """Megatron-style layouts from the adapter's weight list (exact paths)."""
    model_size = _mesh_size(device_mesh, model_dim)
    layouts = {}
    # Teacher and student share paths; the deeper of the two has more blocks.
    for backbone in backbones:
        _add_adapter_layouts(backbone, adapter, model_dim, model_size, layouts)
    return {
        "^" + re.escape(path) + "$": axes
        for path, axes in layouts.items()
        if any(axis is not None for axis in axes)
    }


def _add_adapter_layouts(backbone, adapter, model_dim, model_size, layouts):
    items = list(adapter.embeddings(backbone))
    # The token table is the adapter's first item (GUIDE's PCA source).
    token_table = items[0].path
    for index in range(adapter.dims(backbone).num_layers):
        items += adapter.block(backbone, index)
    shapes = {w.path: tuple(w.shape) for w in backbone.weights}
    for item in items:
        if isinstance(item, Table):
            # A vocabulary-parallel token table keeps the tied head's logits
            # sharded on the vocabulary (no all-reduce of `(batch, seq, V)`);
            # a vocabulary the mesh does not divide (GPT-2's 50257) stays
            # replicated rather than failing, as position and segment tables
            # (small) always do.
            rows = shapes[item.path][0]
            shard = item.path == token_table and rows % model_size == 0
            layouts[item.path] = (model_dim if shard else None, None)
        elif isinstance(item, (Read, Write)):
            rank = len(shapes[item.path])
            axes = [None] * rank
            for axis, rule in item.select.items():
                if rule in _PARALLEL_RULES:
                    axes[axis] = model_dim
            layouts[item.path] = tuple(axes)
            # A reading kernel's bias lives on its output axes (the kernel's
            # axes without `d_axis`); a writing kernel's bias is `(d,)`.
            if item.bias is not None:
                if isinstance(item, Read):
                    bias_axes = axes[: item.d_axis] + axes[item.d_axis + 1 :]
                else:
                    bias_axes = [None] * len(shapes[item.bias])
                layouts[item.bias] = tuple(bias_axes)


def _replicate_undivided_vocabulary(layouts, adapter, backbones, device_mesh):
    """Keeps the token table's vocabulary axis whole where the mesh does not
    divide it (as `_adapter_layout` does): a KerasHub layout map splits it."""
    path = next(iter(adapter.embeddings(backbones[0]))).path
    for backbone in backbones:
        rows = {w.path: w.shape[0] for w in backbone.weights}[path]
        layout = layouts[path]
        if layout is not None and rows % _mesh_size(device_mesh, layout.axes[0]):
            # An exact key wins over the patterns (`LayoutMap.__getitem__`).
            if path in layouts:
                del layouts[path]
            layouts[path] = (None, *layout.axes[1:])
            return


def sharding_layouts(
    teacher, student, device_mesh, model_dim="model", batch_dim="batch"
):
    """Builds one `LayoutMap` that shards a teacher and its student for `ModelParallel`.

    Families whose KerasHub backbone has `get_layout_map` (Llama, Gemma, Qwen)
    use it unchanged: the KerasHub team's sharding, with the `(model, batch)`
    2-D scheme of the Gemma training setup. The others (GPT-2, BERT, Qwen3)
    are sharded Megatron-style from the family adapter's weight description:
    the heads/neurons axes of every kernel that reads the residual stream
    (query, key, value, MLP input) and of every kernel that writes it
    (attention and MLP output), the readers' biases alike, and the token
    table on its vocabulary axis when the mesh divides it. Everything else is
    replicated. Teacher and student share weight paths, so one entry covers a
    weight of both; every sharded axis is checked to divide by its mesh axes
    in both models.

    Only paths and shapes are read, never values: the models may be built
    inside `keras.StatelessScope()` (no memory) just to plan the layout, then
    built for real inside `keras.distribution.ModelParallel(...).scope()`.

    Args:
        teacher: a `keras_hub.models.Backbone` or a KerasHub task model (the
            GUIDE teacher).
        student: a `keras.Model`. A model of the same family (e.g. from
            `keras_guide.build_student`).
        device_mesh: a `keras.distribution.DeviceMesh` whose axis names
            include `model_dim` and `batch_dim`.
        model_dim: str. The mesh axis weights are split on. Defaults to
            `"model"`.
        batch_dim: str. The mesh axis data is split on (and, in the KerasHub
            layouts, a second weight axis, FSDP-style). Defaults to `"batch"`.

    Returns:
        A `keras.distribution.LayoutMap` on `device_mesh`.

    Raises:
        ValueError: a mesh without `model_dim`/`batch_dim`, a model of no
            supported family, teacher and student of different families
            (as `guide` defines them), or a weight whose sharded axis
            does not divide by its mesh axes (the message names the weight,
            the model, its shape, the layout and the mesh).

    Example:
    >>> mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"))
    >>> layouts = sharding_layouts(teacher, student, mesh)
    >>> distribution = keras.distribution.ModelParallel(
    ...     layout_map=layouts, batch_dim_name="batch")

    Reference: arXiv 2510.06502; Shoeybi et al. 2019 (Megatron-LM).
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise ValueError(
            "`device_mesh` must be a `keras.distribution.DeviceMesh`. "
            f"Received: device_mesh={device_mesh!r}"
        )
    for arg, name in (("model_dim", model_dim), ("batch_dim", batch_dim)):
        if name not in device_mesh.axis_names:
            raise ValueError(
                f"`{arg}` must name an axis of the device mesh, whose axes are "
                f"{tuple(device_mesh.axis_names)}. Received: {arg}={name!r}"
            )
    t_backbone, s_backbone = backbone_of(teacher), backbone_of(student)
    adapter = shared_adapter(t_backbone, s_backbone)
    if adapter is None:
        raise ValueError(
            f"Teacher ({type(t_backbone).__name__}) and student "
            f"({type(s_backbone).__name__}) must be of one family to share a "
            "layout map. Build the student with "
            "`keras_guide.build_student(teacher, ...)`."
        )
    get_layout_map = getattr(type(t_backbone), "get_layout_map", None)
    if get_layout_map is not None:
        layouts = get_layout_map(
            device_mesh,
            model_parallel_dim_name=model_dim,
            data_parallel_dim_name=batch_dim,
        )
        _replicate_undivided_vocabulary(
            layouts, adapter, (t_backbone, s_backbone), device_mesh
        )
    else:
        layouts = keras.distribution.LayoutMap(device_mesh)
        for pattern, axes in _adapter_layout(
            (t_backbone, s_backbone), adapter, device_mesh, model_dim
        ).items():
            layouts[pattern] = axes
    check_sharding(layouts, {"teacher": teacher, "student": student})
    return layouts


def check_sharding(layouts, models):
    """Checks that every weight of `models` fits its layout in `layouts`.

    Each weight's layout (`layouts[variable.path]`, as `ModelParallel` looks
    it up) must have the weight's rank, and every sharded axis must divide by
    the product of the mesh axes it is split on.

    Args:
        layouts: a `keras.distribution.LayoutMap`, or a distribution with
            `get_variable_layout` (`keras.distribution.ModelParallel`).
        models: dict. `{role: model}`, each model a `keras.Model`; `role`
            (str) names the model in errors.

    Raises:
        ValueError: naming the weight, its model, shape, layout and the mesh,
            with the fix.
    """
    if hasattr(layouts, "get_variable_layout"):
        layout_of, mesh = layouts.get_variable_layout, layouts.device_mesh
    else:
        layout_of, mesh = (lambda v: layouts[v.path]), layouts.device_mesh
    mesh_desc = dict(zip(mesh.axis_names, mesh.shape))
    for role, model in models.items():
        for variable in model.weights:
            try:
                layout = layout_of(variable)
            except ValueError as error:
                raise ValueError(
                    f"The {role}'s weight `{variable.path}` matches several "
                    f"layout map keys: {error}"
                ) from None
            if layout is None:
                continue
            shape = tuple(variable.shape)
            axes = tuple(layout.axes)
            if len(axes) != len(shape):
                raise ValueError(
                    f"The layout {axes} for the {role}'s weight "
                    f"`{variable.path}` has rank {len(axes)}, the weight has "
                    f"shape {shape}. Fix the layout map entry for this path."
                )
            for dim, (size, axis) in enumerate(zip(shape, axes)):
                parts = _mesh_size(mesh, axis)
                if size % parts:
                    raise ValueError(
                        f"The {role}'s weight `{variable.path}` of shape "
                        f"{shape} cannot be sharded as {axes} on the mesh "
                        f"{mesh_desc}: axis {dim} has size {size}, not a "
                        f"multiple of {parts} (mesh axes {_axis_names(axis)}). "
                        f"Choose {role} sizes divisible by {parts} (e.g. "
                        "num_heads, num_key_value_heads, intermediate_dim, "
                        "hidden_dim), or a mesh whose axes divide them."
                    )
