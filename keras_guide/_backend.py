"""The one place where keras_guide reaches into Keras internals, and why.

Each function here uses something Keras does not export; each has a test in
`tests/_backend_test.py` that fails, naming the attribute, when a Keras
release moves it (`pyproject.toml` pins the tested range).

- Training state. JAX compiles the train step as a pure function of the
  model's state. A variable that is not part of that state (a regularizer's
  strength or target, created outside any layer) would be frozen into the
  compiled step as a constant, so a schedule could not change it without
  retracing. `track_state` makes such variables part of the model's state
  (through `Layer._seed_generators`); `assign_during_fit` writes one while a
  JAX `fit` holds the state outside the variables (`JAXTrainer.jax_state_sync`,
  not exported).
- `scale_loss_for_distribution` (`keras.src.losses.loss`): what Keras'
  trainers expect a custom `compute_loss` to return under `tf.distribute`.
- `restore_variables_on_error`: Keras 3.15's JAX trainer empties every
  variable of the model (`KerasVariable._value = None`) when `fit`,
  `evaluate` or `predict` starts and puts the values back after each
  epoch; an error before the first step ends (a bad batch, Ctrl-C) leaves
  the teacher and the student unreadable. This puts back what was there.
- Global random state (`rng_state`): on PyTorch, Keras draws the masks of
  a dropout layer built without a seed (as KerasHub's are) from torch's
  global generator, not from the layer's seed state, so a resumed run
  needs that generator's state too.
- `has_compiled_metrics` (`Trainer._compile_metrics`): the Distiller makes
  the student's whole logits during training only where compiled metrics
  read them.
- `call_nodes` reads a functional model's graph (`Functional._nodes_by_depth`,
  `Node.input_tensors` / `output_tensors`), which has no public accessor, to
  reach layers nested inside a KerasHub backbone.
"""

import contextlib

import keras


class KerasInternalsError(RuntimeError):
    """A Keras internal keras_guide relies on is missing from this release."""


def _require(owner, attribute):
    if not hasattr(owner, attribute):
        raise KerasInternalsError(
            f"keras_guide relies on `{type(owner).__name__}.{attribute}`, which "
            f"Keras {keras.__version__} does not have. keras_guide is tested with "
            "the Keras range pinned in its pyproject.toml; install a Keras from "
            "that range, or update keras_guide/_backend.py for this release."
        )
    return getattr(owner, attribute)


class _TrackedVariable:
    """Holds a variable in a layer's `_seed_generators` slot.

    Keras lists `sg.state` for each entry there in `layer.variables` (hence in
    the JAX train state) but does not save them with the layer's weights, which
    is exactly right for state that belongs to training, not to the model: a
    saved student still loads where keras_guide's variables do not exist.
    """

    def __init__(self, variable):
        self.state = variable


def track_state(layer, variables):
    """Makes exactly `variables` the state this module tracks on `layer` (and
    its parents): ones tracked before and not passed again (the variables of
    regularizers since replaced) are dropped, so guiding a student twice does
    not leave the first guide's state behind."""
    slot = _require(layer, "_seed_generators")
    wanted = {id(variable) for variable in variables}
    slot[:] = [
        entry
        for entry in slot
        if not isinstance(entry, _TrackedVariable) or id(entry.state) in wanted
    ]
    known = {id(entry.state) for entry in slot if hasattr(entry, "state")}
    for variable in variables:
        if id(variable) not in known:
            slot.append(_TrackedVariable(variable))
            known.add(id(variable))


def assign_during_fit(model, variable, value):
    """Assigns `value` to `variable`, also while a JAX `fit` is running on `model`."""
    if model is not None and _runs_on_jax(model):
        # A running fit keeps the state outside the variables; syncing it back
        # (a no-op outside a fit) makes the next step re-read every variable,
        # this one included.
        _require(model, "jax_state_sync")()
    variable.assign(value)


def _runs_on_jax(model):
    return keras.backend.backend() == "jax" and isinstance(model, keras.Model)


def scale_loss_for_distribution(loss):
    """The per-replica share of `loss` under `tf.distribute` (else `loss`).

    Keras' trainers sum the replicas' gradients and unscale the logged loss,
    so a custom `compute_loss` must return this; a no-op on one device and
    on the other backends.
    """
    from keras.src.losses import loss as loss_module

    return _require(loss_module, "scale_loss_for_distribution")(loss)


def has_compiled_metrics(model):
    """Whether `compile` gave `model` metrics (`Trainer._compile_metrics`;
    Keras keeps them through a later `compile` without metrics, so the
    compile config's `metrics` does not tell)."""
    return _require(model, "_compile_metrics") is not None


def _model_variables(model):
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.variables) + list(model.metrics_variables)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    return list({id(v): v for v in variables}.values())


@contextlib.contextmanager
def restore_variables_on_error(model):
    """JAX: if the block raises, puts back the value of every variable of
    `model` (and of its optimizer) that Keras' trainer left empty.

    Values are kept by reference (JAX arrays are immutable, nothing is
    copied). The optimizer is built first when it is not, so its variables
    exist before the trainer empties them. A no-op on other backends.
    """
    if keras.backend.backend() != "jax":
        yield
        return
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built and model.built:
        optimizer.build(model.trainable_variables)
    saved = [(v, _require(v, "_value")) for v in _model_variables(model)]
    try:
        yield
    except BaseException:
        for variable, value in saved:
            if variable._value is None and value is not None:
                variable.assign(value)
        raise


def rng_state():
    """The backend's global random state that dropout reads, JSON-able.

    PyTorch: `{"torch": [base64 CPU state, *base64 CUDA states]}` (Keras'
    unseeded dropout calls `torch.nn.functional.dropout`); `{}` on JAX and
    TensorFlow, whose dropout reads only the layers' seed states.
    """
    if keras.backend.backend() != "torch":
        return {}
    import base64

    import torch

    states = [torch.get_rng_state()]
    if torch.cuda.is_available():
        states += list(torch.cuda.get_rng_state_all())
    return {
        "torch": [base64.b64encode(s.cpu().numpy().tobytes()).decode() for s in states]
    }


def set_rng_state(state):
    """Restores what `rng_state` returned (a no-op for `{}`)."""
    if not state or "torch" not in state:
        return
    import base64

    import numpy as np
    import torch

    states = [
        torch.from_numpy(np.frombuffer(base64.b64decode(s), np.uint8).copy())
        for s in state["torch"]
    ]
    torch.set_rng_state(states[0])
    if len(states) > 1 and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states[1:])


def is_functional(model):
    """Whether `model` is a functional model whose graph `call_nodes` can read."""
    return isinstance(model, keras.Model) and bool(
        getattr(model, "_nodes_by_depth", None)
    )


def call_nodes(model, operation):
    """The calls of `operation` (a layer or sub-model) in `model`'s graph.

    Returns:
        A list of `(input_tensors, output_tensors)`, one per call, each a list
        of symbolic tensors of `model`'s graph.
    """
    nodes = [
        node
        for depth_nodes in _require(model, "_nodes_by_depth").values()
        for node in depth_nodes
        if node.operation is operation
    ]
    return [
        (_require(node, "input_tensors"), _require(node, "output_tensors"))
        for node in nodes
    ]


def sublayers(layer):
    """Every layer nested in `layer`, at any depth (Keras keeps no public
    recursive listing; `Layer._flatten_layers` is the one it uses itself)."""
    return _require(layer, "_flatten_layers")(include_self=False, recursive=True)
