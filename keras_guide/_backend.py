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
- `call_nodes` reads a functional model's graph (`Functional._nodes_by_depth`,
  `Node.input_tensors` / `output_tensors`), which has no public accessor, to
  reach layers nested inside a KerasHub backbone.
"""

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
    """Makes `variables` part of `layer`'s (and its parents') training state."""
    slot = _require(layer, "_seed_generators")
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
