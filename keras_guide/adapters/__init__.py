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
