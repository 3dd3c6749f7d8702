"""Gemma: head-first attention kernels, `(1 + scale)` RMSNorms, √d embedding scaling, tied head."""

from keras_guide.adapters.base import Adapter
from keras_guide.adapters.base import Head
from keras_guide.adapters.base import Norm
from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Table
from keras_guide.adapters.base import Write


class GemmaAdapter(Adapter):
    family = "gemma"
    backbone_class = "GemmaBackbone"
    norm_kind = "rms"
    rotary = True
    intermediate_units = 2
    config_keys = {
        "hidden_dim": "hidden_dim",
        "num_layers": "num_layers",
        "num_heads": "num_query_heads",
        "num_key_value_heads": "num_key_value_heads",
        "intermediate_dim": "intermediate_dim",
        "head_dim": "head_dim",
    }

    options = {
        "layer_norm_epsilon": None,
        "query_head_dim_normalize": None,
        "use_post_ffw_norm": (False,),
        "use_post_attention_norm": (False,),
        "final_logit_soft_cap": None,
        "attention_logit_soft_cap": None,
        "use_sliding_window_attention": None,
        "sliding_window_size": None,
    }

    def embeddings(self, backbone):
        final = Norm("final_normalization/scale", offset=1.0)
        return [
            Table("token_embedding/embeddings", sqrt_d_scaled=True),
            final,
            Head("token_embedding/embeddings", None, final),
        ]

    def block(self, backbone, index):
        p = f"decoder_block_{index}/"
        attention_norm = Norm(p + "pre_attention_norm/scale", offset=1.0)
        mlp_norm = Norm(p + "pre_ffw_norm/scale", offset=1.0)
        a = p + "attention/"
        return [
            Read(a + "query/kernel", 1, {0: "heads", 2: "head_dim"}, attention_norm, query=True),
            Read(a + "key/kernel", 1, {0: "kv_heads", 2: "head_dim"}, attention_norm),
            Read(a + "value/kernel", 1, {0: "kv_heads", 2: "head_dim"}, attention_norm),
            Write(a + "attention_output/kernel", 2, {0: "heads", 1: "head_dim"}),
            Read(p + "ffw_gating/kernel", 0, {1: "neurons"}, mlp_norm),
            Read(p + "ffw_gating_2/kernel", 0, {1: "neurons"}, mlp_norm),
            Write(p + "ffw_linear/kernel", 1, {0: "neurons"}),
            attention_norm,
            mlp_norm,
        ]
