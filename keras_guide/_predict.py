"""Logits from a model on token ids, whether or not it carries a preprocessor."""

import weakref

import keras

# One logits model per model: each new one traces and compiles its own
# predict function, which `heldout_cross_entropy` (called at every
# evaluation of a training run) would otherwise pay for every time.
_LOGITS_MODELS = weakref.WeakKeyDictionary()


def logits_model(model):
    """`model`'s graph from token ids to logits, without its preprocessor.

    A KerasHub task tracks its preprocessor and tokenizer, layers that are
    never built; Keras' JAX `predict_on_batch` then calls a model holding
    them once more, eagerly, before every compiled call (on JAX: op by op,
    a compilation per operation and shape). A functional model over the
    same layers and weights has only built layers. A model that is not
    functional is returned as it is. The functional model is made once per
    `model` (kept while `model` lives), so its compiled predict function is
    reused.
    """
    cached = _LOGITS_MODELS.get(model)
    if cached is not None:
        return cached
    try:
        inputs, outputs = model.input, model.output
    except (AttributeError, ValueError):
        return model
    functional = keras.Model(inputs, outputs, name=f"{model.name}_logits")
    _LOGITS_MODELS[model] = functional
    return functional


def predictor(model):
    """Returns `x -> logits` for `model` on already-tokenized inputs.

    A KerasHub task model's own `predict_on_batch` runs its preprocessor,
    which takes raw text, on the token ids; the task's graph without its
    preprocessor (`logits_model`) is called instead.
    """
    if getattr(model, "preprocessor", None) is not None:
        return logits_model(model).predict_on_batch
    return model.predict_on_batch
