"""Family adapters: one module per KerasHub family, all following `base.Adapter`."""

from keras_guide.adapters.base import Adapter
from keras_guide.adapters.bert import BertAdapter
from keras_guide.adapters.gemma import GemmaAdapter
from keras_guide.adapters.gpt2 import GPT2Adapter
from keras_guide.adapters.llama import LlamaAdapter
from keras_guide.adapters.qwen import Qwen3Adapter
from keras_guide.adapters.qwen import QwenAdapter

ADAPTERS = (
    GPT2Adapter(),
    LlamaAdapter(),
    GemmaAdapter(),
    BertAdapter(),
    QwenAdapter(),
    Qwen3Adapter(),
)


def backbone_of(model):
    """The KerasHub backbone of a backbone or task model."""
    return getattr(model, "backbone", None) or model


def shared_adapter(teacher, student):
    """The adapter of a teacher and student backbone of one family, else `None`.

    Two backbones are of one family when `adapter_for` gives both the same
    adapter: their weight paths then match, whatever their Python classes.

    Raises:
        ValueError: from `adapter_for`, when either has no adapter.
    """
    adapter = adapter_for(teacher)
    return adapter if adapter_for(student) is adapter else None


def adapter_for(backbone):
    """Returns the adapter whose backbone class `backbone` is an instance of."""
    import keras_hub

    for adapter in ADAPTERS:
        cls = getattr(keras_hub.models, adapter.backbone_class, None)
        if cls is not None and isinstance(backbone, cls):
            return adapter
    supported = ", ".join(f"{a.family} ({a.backbone_class})" for a in ADAPTERS)
    raise ValueError(
        f"No GUIDE adapter for {type(backbone).__name__}. Supported families: "
        f"{supported}. Add one module under keras_guide/adapters/ to support "
        "another family."
    )
