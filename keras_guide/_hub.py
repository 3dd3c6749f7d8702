"""The one place where keras_guide corrects KerasHub, and why.

KerasHub 0.32's `LlamaBackbone.get_config()` leaves out `tie_word_embeddings`,
so a tied Llama (SmolLM, Llama 3.2 1B/3B, every student `build_student` makes
of them) saves a config that rebuilds it untied: the saved file cannot be
loaded ("expected 2 variables ... reverse_embeddings") and a student built
from the config silently gets an untied head. `fix_llama_config` adds the
key, read off the embedding layer, to the configs Llama backbones write from
then on. A plain KerasHub loads such a file (the constructor takes the key),
and once KerasHub writes the key itself the fix changes nothing.
"""

_FIXED = "_keras_guide_keeps_tie"


def fix_llama_config():
    """Makes `LlamaBackbone.get_config()` (and its subclasses') carry the tie."""
    import keras_hub

    cls = keras_hub.models.LlamaBackbone
    original = cls.get_config
    if getattr(original, _FIXED, False):
        return

    def get_config(self):
        config = original(self)
        config.setdefault("tie_word_embeddings", bool(self.token_embedding.tie_weights))
        return config

    setattr(get_config, _FIXED, True)
    get_config.__doc__ = original.__doc__
    cls.get_config = get_config
