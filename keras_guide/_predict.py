"""Logits from a model on token ids, whether or not it carries a preprocessor."""

import keras


def predictor(model):
    """Returns `x -> logits` for `model` on already-tokenized inputs.

    A KerasHub task model's own `predict_on_batch` runs its preprocessor,
    which takes raw text, on the token ids; `keras.Model`'s does not, so a
    task model with a preprocessor is called through it.
    """
    if getattr(model, "preprocessor", None) is not None:
        return lambda x: keras.Model.predict_on_batch(model, x)
    return model.predict_on_batch
