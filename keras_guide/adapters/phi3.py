"""Phi-3: the Llama maths under its own layer names, untied head.

Hugging Face's Phi-3 fuses query, key and value into one `qkv_proj` and gate
and up into one `gate_up_proj`; KerasHub's converter splits both, so its
`Phi3Backbone` has separate `query`/`key`/`value` and
`feedforward_gate_dense`/`feedforward_intermediate_dense` kernels, listed here
as Llama's are. Its `post_attention_layernorm` is the norm before the MLP (a
pre-norm that the MLP's kernels read, folded like Llama's
`feedforward_layernorm`). The head width is `hidden_dim // num_query_heads`;
`max_sequence_length` and `pretraining_sequence_length` only set the "su"
RoPE scaling, so they are options teacher and student share, not sizes.
"""

from keras_guide.adapters.llama import LlamaAdapter


class Phi3Adapter(LlamaAdapter):
    family = "phi3"
    backbone_class = "Phi3Backbone"
    attention_prefix = "attention/"
    attention_norm = "pre_attention_layernorm/scale"
    mlp_norm = "post_attention_layernorm/scale"
    tie_option = None
    options = {
        "layer_norm_epsilon": None,
        "max_sequence_length": None,
        "pretraining_sequence_length": None,
        "rope_max_wavelength": None,
        "rope_scaling_type": None,
        "rope_scaling_short_factor": None,
        "rope_scaling_long_factor": None,
    }
