"""GPT-2: learned positions, pre-LayerNorm with biases, tied head."""

from keras_guide.adapters.base import Adapter
from keras_guide.adapters.base import Head
from keras_guide.adapters.base import Norm
from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Table
from keras_guide.adapters.base import Write

_HEAD_AXES = {1: "heads", 2: "head_dim"}


class GPT2Adapter(Adapter):
    family = "gpt2"
    backbone_class = "GPT2Backbone"
    norm_kind = "layer"
    config_keys = {
        "hidden_dim": "hidden_dim",
        "num_layers": "num_layers",
        "num_heads": "num_heads",
        "intermediate_dim": "intermediate_dim",
        "max_sequence_length": "max_sequence_length",
    }

    def embeddings(self, backbone):
        final = Norm("layer_norm/gamma", "layer_norm/beta")
        return [
            Table("token_embedding/embeddings"),
            Table("position_embedding/embeddings", positions=True),
            final,
            Head("token_embedding/embeddings", None, final),
        ]

    def block(self, backbone, index):
        p = f"transformer_layer_{index}/"
        attention_norm = Norm(
            p + "self_attention_layer_norm/gamma", p + "self_attention_layer_norm/beta"
        )
        mlp_norm = Norm(
            p + "feedforward_layer_norm/gamma", p + "feedforward_layer_norm/beta"
        )
        a = p + "self_attention/"
        return [
            Read(
                a + "query/kernel",
                0,
                _HEAD_AXES,
                attention_norm,
                a + "query/bias",
                query=True,
            ),
            Read(a + "key/kernel", 0, _HEAD_AXES, attention_norm, a + "key/bias"),
            Read(a + "value/kernel", 0, _HEAD_AXES, attention_norm, a + "value/bias"),
            Write(
                a + "attention_output/kernel",
                2,
                {0: "heads", 1: "head_dim"},
                a + "attention_output/bias",
            ),
            Read(
                p + "feedforward_intermediate_dense/kernel",
                0,
                {1: "neurons"},
                mlp_norm,
                p + "feedforward_intermediate_dense/bias",
            ),
            Write(
                p + "feedforward_output_dense/kernel",
                1,
                {0: "neurons"},
                p + "feedforward_output_dense/bias",
            ),
            attention_norm,
            mlp_norm,
        ]
