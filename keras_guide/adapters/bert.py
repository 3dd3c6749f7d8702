"""BERT: encoder with token, position and segment embeddings, post-LayerNorm, pooler.

Post-LayerNorm sits on the residual stream itself, so its gain cannot be folded
into a reader; the student keeps the best diagonal gain (docs/method.md §2),
which is exact only when the projection is a selection.
"""

from keras_guide.adapters.base import Norm
from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Table
from keras_guide.adapters.base import Write
from keras_guide.adapters.gpt2 import GPT2Adapter

_HEAD_AXES = {1: "heads", 2: "head_dim"}


class BertAdapter(GPT2Adapter):
    """GPT-2's sizes and config names; its own weights and post-norm layout."""

    family = "bert"
    backbone_class = "BertBackbone"
    options = {"num_segments": None}
    post_norm = True

    def embeddings(self, backbone):
        return [
            Table("token_embedding/embeddings"),
            Table("position_embedding/embeddings", positions=True),
            Table("segment_embedding/embeddings"),
            Norm("embeddings_layer_norm/gamma", "embeddings_layer_norm/beta"),
            Read("pooled_dense/kernel", 0, {}, bias="pooled_dense/bias", out_axis=1),
        ]

    def block(self, backbone, index):
        p = f"transformer_layer_{index}/"
        a = p + "self_attention_layer/"
        return [
            Read(a + "query/kernel", 0, _HEAD_AXES, bias=a + "query/bias", query=True),
            Read(a + "key/kernel", 0, _HEAD_AXES, bias=a + "key/bias"),
            Read(a + "value/kernel", 0, _HEAD_AXES, bias=a + "value/bias"),
            Write(
                a + "attention_output/kernel",
                2,
                {0: "heads", 1: "head_dim"},
                a + "attention_output/bias",
            ),
            Norm(
                p + "self_attention_layer_norm/gamma",
                p + "self_attention_layer_norm/beta",
            ),
            Read(
                p + "feedforward_intermediate_dense/kernel",
                0,
                {1: "neurons"},
                bias=p + "feedforward_intermediate_dense/bias",
            ),
            Write(
                p + "feedforward_output_dense/kernel",
                1,
                {0: "neurons"},
                p + "feedforward_output_dense/bias",
            ),
            Norm(p + "feedforward_layer_norm/gamma", p + "feedforward_layer_norm/beta"),
        ]
