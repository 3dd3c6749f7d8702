"""Llama: RMSNorm, RoPE, grouped-query attention, gated MLP, tied or untied head."""

from keras_guide.adapters.base import GROUPED_QUERY_KEYS
from keras_guide.adapters.base import Adapter
from keras_guide.adapters.base import Head
from keras_guide.adapters.base import Norm
from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Table
from keras_guide.adapters.base import Write


class LlamaAdapter(Adapter):
    family = "llama"
    backbone_class = "LlamaBackbone"
    norm_kind = "rms"
    rotary = True
    config_keys = dict(GROUPED_QUERY_KEYS)
    block_prefix = "transformer_layer_{}/"
    attention_prefix = "self_attention/"
    attention_norm = "self_attention_layernorm/scale"
    mlp_norm = "feedforward_layernorm/scale"
    final_norm = "sequence_output_layernorm/scale"
    attention_bias = False
    tie_option = "tie_word_embeddings"
    options = {
        "rope_max_wavelength": None,
        "rope_position_scaling_factor": None,
        "rope_frequency_adjustment_factor": None,
        "rope_low_freq_factor": None,
        "rope_high_freq_factor": None,
        "rope_pretraining_sequence_length": None,
        "layer_norm_epsilon": None,
    }

    def embeddings(self, backbone):
        final = Norm(self.final_norm)
        table = "token_embedding/embeddings"
        reverse = None if self.tied(backbone) else "token_embedding/reverse_embeddings"
        return [Table(table), final, Head(table, reverse, final)]

    def block(self, backbone, index):
        p = self.block_prefix.format(index)
        attention_norm = Norm(p + self.attention_norm)
        mlp_norm = Norm(p + self.mlp_norm)
        a = p + self.attention_prefix
        bias = (
            (lambda name: a + name + "/bias")
            if self.attention_bias
            else (lambda name: None)
        )
        return [
            Read(
                a + "query/kernel",
                0,
                {1: "heads", 2: "head_dim"},
                attention_norm,
                bias("query"),
                query=True,
            ),
            Read(
                a + "key/kernel",
                0,
                {1: "kv_heads", 2: "head_dim"},
                attention_norm,
                bias("key"),
            ),
            Read(
                a + "value/kernel",
                0,
                {1: "kv_heads", 2: "head_dim"},
                attention_norm,
                bias("value"),
            ),
            Write(a + "attention_output/kernel", 2, {0: "heads", 1: "head_dim"}),
            *self.mlp(backbone, p, mlp_norm),
            attention_norm,
            mlp_norm,
        ]

    def mlp(self, backbone, p, mlp_norm):
        """The gated MLP of the block whose paths start with `p`."""
        return [
            Read(p + "feedforward_gate_dense/kernel", 0, {1: "neurons"}, mlp_norm),
            Read(
                p + "feedforward_intermediate_dense/kernel", 0, {1: "neurons"}, mlp_norm
            ),
            Write(p + "feedforward_output_dense/kernel", 1, {0: "neurons"}),
        ]
