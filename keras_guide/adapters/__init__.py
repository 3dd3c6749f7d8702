"""Family adapters: one module per KerasHub family, all following `base.Adapter`."""

from keras_guide.adapters.base import Adapter
from keras_guide.adapters.bert import BertAdapter
from keras_guide.adapters.distil_bert import DistilBertAdapter
from keras_guide.adapters.gemma import Gemma2Adapter
from keras_guide.adapters.gemma import Gemma3Adapter
from keras_guide.adapters.gemma import GemmaAdapter
from keras_guide.adapters.gpt2 import GPT2Adapter
from keras_guide.adapters.llama import LlamaAdapter
from keras_guide.adapters.mistral import MistralAdapter
from keras_guide.adapters.mixtral import MixtralAdapter
from keras_guide.adapters.phi3 import Phi3Adapter
from keras_guide.adapters.qwen import Qwen3Adapter
from keras_guide.adapters.qwen import QwenAdapter
from keras_guide.adapters.roberta import RobertaAdapter

ADAPTERS = (
    GPT2Adapter(),
    LlamaAdapter(),
    GemmaAdapter(),
    Gemma2Adapter(),
    Gemma3Adapter(),
    BertAdapter(),
    QwenAdapter(),
    Qwen3Adapter(),
    MistralAdapter(),
    Phi3Adapter(),
    MixtralAdapter(),
    RobertaAdapter(),
    DistilBertAdapter(),
)

# KerasHub backbones GUIDE refuses, with the reason (it follows "KerasHub's
# <class>"): what keeps an adapter from placing every weight.
_MOE_FUSED = (
    "fuses each expert's gate and up projections into one (experts, d, 2·f) "
    "kernel and sizes its experts by `moe_intermediate_dim`, apart from the "
    "dense MLP's `intermediate_dim`; GUIDE's neuron selection covers one "
    "unfused MLP width per family (Mixtral's experts are supported)"
)
REFUSED = {
    "QwenMoeBackbone": _MOE_FUSED + ", and it adds a gated shared expert",
    "Qwen3MoeBackbone": _MOE_FUSED,
    "SmolLM3Backbone": (
        "(0.32) builds every block's attention output kernel as "
        "`o_proj/kernel` and its RoPE table as `rotary_emb/inv_freq`, without "
        "the block's name, so all blocks share those paths and GUIDE, which "
        "places weights by path, cannot tell them apart; its query/key/value "
        "kernels are also flattened `(d, heads·head_dim)` Dense kernels, whose "
        "heads the planner cannot select yet"
    ),
}


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
    """Returns the adapter whose backbone class `backbone` is an instance of.

    Raises:
        ValueError: for a backbone of no supported family, naming the
            supported ones, or of a refused one (`REFUSED`), saying why.
    """
    import keras_hub

    from keras_guide import _hub

    _hub.fix_llama_config()
    for adapter in ADAPTERS:
        cls = getattr(keras_hub.models, adapter.backbone_class, None)
        if cls is not None and isinstance(backbone, cls) and adapter.accepts(backbone):
            return adapter
    for name, reason in REFUSED.items():
        cls = getattr(keras_hub.models, name, None)
        if cls is not None and isinstance(backbone, cls):
            raise ValueError(
                f"GUIDE does not support {name}: KerasHub's {name} {reason}. "
                "It refuses rather than leave weights random or wrong."
            )
    supported = ", ".join(f"{a.family} ({a.backbone_class})" for a in ADAPTERS)
    raise ValueError(
        f"No GUIDE adapter for {type(backbone).__name__}. Supported families: "
        f"{supported}. Add one module under keras_guide/adapters/ to support "
        "another family."
    )
