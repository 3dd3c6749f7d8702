"""One-pass functional models that also return hidden states of inner layers.

`keras.Model(model.inputs, layer.output)` only works for a layer of the
model's own graph. KerasHub task models nest their blocks one level down
(`causal_lm.backbone.get_layer("transformer_layer_0")`), and a model holding
both the task's output and the inner output would run the nested model twice.
`feature_model` rebuilds the task as `inputs → nested model exposing its
inner outputs → the rest of the task (the head)`, so every layer runs once.
Cutting the task after its nested model needs the graph's nodes, which Keras
does not export (`keras_guide._backend.call_nodes` reads them).
"""

import keras

from keras_guide import _backend


def _layer_names(model, prefix=""):
    """All layer names reachable through nested functional models."""
    names = []
    for layer in getattr(model, "layers", []):
        names.append(prefix + layer.name)
        if _backend.is_functional(layer):
            names.extend(_layer_names(layer, prefix + layer.name + "/"))
    return names


def _owner(model, name):
    """Returns the layer of `model` holding `name`: the layer or a sub-model."""
    for layer in model.layers:
        if layer.name == name:
            return layer, True
    for layer in model.layers:
        if _backend.is_functional(layer) and _owner(layer, name) is not None:
            return layer, False
    return None


def _expose(model, names, role):
    """Returns `(output, {name: tensor})`, tensors symbolic on `model.input`."""
    hidden = {}
    nested = {}
    for name in names:
        layer, direct = _find(model, name, role)
        if direct:
            hidden[name] = _single_output(layer, name, role)
        else:
            nested.setdefault(layer.name, (layer, []))[1].append(name)
    if len(nested) > 1:
        raise ValueError(
            f"The {role} layers {names} lie in different nested models of "
            f"`{model.name}`; choose layers from one of them. "
            f"Received: {role}_layer_name values {names}"
        )
    output = model.output
    for sub, sub_names in nested.values():
        output, sub_hidden = _expose_nested(model, sub, sub_names, role)
        hidden.update(sub_hidden)
    return output, hidden


def _find(model, name, role):
    found = _owner(model, name)
    if found is None:
        raise ValueError(
            f"The {role} model `{model.name}` has no layer named "
            f"`{name}`, also not inside its nested models. Pass one of "
            f"{_layer_names(model)} (without the `model/` prefix). "
            f"Received: {role}_layer_name={name!r}"
        )
    return found


def _single_output(layer, name, role):
    try:
        return layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"The {role} layer `{name}` is called more than once (or "
            "never) in its model's graph, so its output is ambiguous. "
            "Choose a layer called exactly once, e.g. a transformer "
            f"block. Received: {role}_layer_name={name!r}"
        ) from error


def _expose_nested(model, sub, names, role):
    """`_expose` for layers inside `sub`, a model called once in `model`:
    `model` is rebuilt as `inputs → sub exposing them → the layers after it`."""
    calls = _backend.call_nodes(model, sub)
    inputs = {id(t) for t in keras.tree.flatten(model.input)}
    if len(calls) != 1 or {id(t) for t in calls[0][0]} != inputs:
        raise ValueError(
            f"Cannot reach inside `{sub.name}` of the {role} model "
            f"`{model.name}`: it must be called once, directly on the "
            "model's inputs (as a KerasHub backbone is in its task). "
            f"Received: {role}_layer_name values {names}"
        )
    sub_output, sub_hidden = _expose(sub, names, role)
    inner = keras.Model(sub.input, {"output": sub_output, "hidden": sub_hidden})
    try:
        head = keras.Model(calls[0][1][0], model.output)
    except ValueError as error:
        raise ValueError(
            f"Cannot reach inside `{sub.name}` of the {role} model "
            f"`{model.name}`: the layers after it also read the model's "
            "inputs. Distill a layer of the model's own graph instead. "
            f"Received: {role}_layer_name values {names}"
        ) from error
    result = inner(model.input)
    return head(result["output"]), result["hidden"]


def feature_model(model, layer_names, role):
    """A model returning `{"output": y, "hidden_states": [h_1, …]}` in one pass.

    Args:
        model: a functional model (a KerasHub task or backbone qualifies).
        layer_names: names of the layers whose outputs to return, in order;
            `None` stands for the model's output.
        role: `"teacher"` or `"student"`, used in error messages.

    Returns:
        A functional `keras.Model` sharing `model`'s layers and weights.

    Raises:
        ValueError: if `model` is not functional or a name is not reachable;
            the message lists the reachable names.
    """
    if not _backend.is_functional(model):
        raise ValueError(
            f"Hidden-state distillation needs a functional {role} model (a "
            "KerasHub task, or one built with `keras.Model(inputs, outputs)`) "
            f"to reach its layers. Received: {role} of type "
            f"{type(model).__name__}"
        )
    names = [name for name in layer_names if name is not None]
    output, hidden = _expose(model, list(dict.fromkeys(names)), role)
    states = [output if name is None else hidden[name] for name in layer_names]
    return keras.Model(
        model.input,
        {"output": output, "hidden_states": states},
        name=f"{model.name}_features",
    )
