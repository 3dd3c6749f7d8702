"""Qwen (Qwen2) and Qwen3: the Llama layout with q/k/v biases (Qwen) or
per-head q/k RMSNorms and a free head width (Qwen3); tied heads by default."""

from keras_guide.adapters.base import Copy
from keras_guide.adapters.llama import LlamaAdapter


class QwenAdapter(LlamaAdapter):
    family = "qwen"
    backbone_class = "QwenBackbone"
    options = {
        "rope_max_wavelength": None,
        "rope_scaling_factor": None,
        "layer_norm_epsilon": None,
        "use_sliding_window_attention": None,
        "sliding_window_size": None,
    }
    attention_bias = True


class Qwen3Adapter(LlamaAdapter):
    family = "qwen3"
    backbone_class = "Qwen3Backbone"
    options = {
        "rope_max_wavelength": None,
        "rope_scaling_factor": None,
        "layer_norm_epsilon": None,
        "sliding_window_size": None,
    }
    config_keys = dict(LlamaAdapter.config_keys, head_dim="head_dim")

    def block(self, backbone, index):
        # The q/k norms act on each head's width, which RoPE families keep.
        a = self.block_prefix.format(index) + "self_attention/"
        return super().block(backbone, index) + [
            Copy(a + "query_dense_layernorm/scale"),
            Copy(a + "key_dense_layernorm/scale"),
        ]
