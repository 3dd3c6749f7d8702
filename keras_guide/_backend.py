"""The one place where keras_guide branches on Keras internals, and why.

JAX compiles the train step as a pure function of the model's state. A variable
that is not part of that state (a regularizer's strength or target, created
outside any layer) would be frozen into the compiled step as a constant, so a
schedule could not change it without retracing. `track_state` makes such
variables part of the model's state; `assign_during_fit` writes one while a
JAX `fit` holds the state outside the variables.
"""

import keras


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
    slot = layer._seed_generators
    known = {id(entry.state) for entry in slot if hasattr(entry, "state")}
    for variable in variables:
        if id(variable) not in known:
            slot.append(_TrackedVariable(variable))
            known.add(id(variable))


def assign_during_fit(model, variable, value):
    """Assigns `value` to `variable`, also while a JAX `fit` is running on `model`."""
    if (
        model is not None
        and keras.backend.backend() == "jax"
        and getattr(model, "_jax_state", None)
        and not getattr(model, "_jax_state_synced", True)
    ):
        # The running fit keeps the state in `model._jax_state`; syncing it back
        # makes the next step re-read every variable, this one included.
        model.jax_state_sync()
    variable.assign(value)
