"""Gemma, Gemma 2 and Gemma 3: head-first attention kernels, `(1 + scale)`
RMSNorms, √d embedding scaling, tied head.

Gemma 2 is KerasHub's `GemmaBackbone` with `use_post_attention_norm=True,
use_post_ffw_norm=True`, logit soft caps and sliding-window layers; Gemma 3
(`Gemma3Backbone`, text-only) adds per-head query/key norms and a gate and up
projection of `intermediate_dim` neurons each.

Post-branch norms normalize what a branch adds to the residual stream, in the
stream's own coordinates: nothing reads them, so no gain folds anywhere, and a
rotation `M` cannot carry an elementwise gain. Each keeps the diagonal of its
projected gain, `r · diag(Mᵀ diag(1 + γ) M)` with `r = √(d_T/d_S)` (the
student normalizes over `d_S` coordinates). That is exact when `M` selects
coordinates, so a full-width student reproduces its teacher, and when the
gains are uniform. Real gains are far from uniform (Gemma 3 270M: up to 170
times a layer's median), and with a PCA `M` the approximation breaks the
model (docs/method.md, "Post-branch norms", has the measurement). Gemma 2
and 3 are therefore post-norm families: `projection="auto"` selects
coordinates, as for BERT.

Soft caps, sliding windows, Gemma 3's RoPE scaling factors and query-key norm
flag define what the weights compute: teacher and student must share them
(`build_student` copies them). A student with fewer blocks maps its blocks
onto the teacher's by `layer_map`; a student block may then be local where its
teacher block is global (or the reverse), and keeps its own window and RoPE
wavelength.
"""

from keras_guide.adapters.base import GROUPED_QUERY_KEYS
from keras_guide.adapters.base import Adapter
from keras_guide.adapters.base import Copy
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
    config_keys = dict(GROUPED_QUERY_KEYS, head_dim="head_dim")

    options = {
        "layer_norm_epsilon": None,
        "query_head_dim_normalize": None,
        # A `GemmaBackbone` with either post norm is Gemma 2 (`accepts`).
        "use_post_ffw_norm": None,
        "use_post_attention_norm": None,
        "final_logit_soft_cap": None,
        "attention_logit_soft_cap": None,
        "use_sliding_window_attention": None,
        "sliding_window_size": None,
    }

    def accepts(self, backbone):
        return not _post_norms(backbone)

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
        items = [
            Read(
                a + "query/kernel",
                1,
                {0: "heads", 2: "head_dim"},
                attention_norm,
                query=True,
            ),
            Read(a + "key/kernel", 1, {0: "kv_heads", 2: "head_dim"}, attention_norm),
            Read(a + "value/kernel", 1, {0: "kv_heads", 2: "head_dim"}, attention_norm),
            Write(a + "attention_output/kernel", 2, {0: "heads", 1: "head_dim"}),
            Read(p + "ffw_gating/kernel", 0, {1: "neurons"}, mlp_norm),
            Read(p + "ffw_gating_2/kernel", 0, {1: "neurons"}, mlp_norm),
            Write(p + "ffw_linear/kernel", 1, {0: "neurons"}),
            attention_norm,
            mlp_norm,
        ]
        # Post-branch norms: read by no kernel, so they keep a diagonal gain.
        if backbone.use_post_attention_norm:
            items.append(Norm(p + "post_attention_norm/scale", offset=1.0))
        if backbone.use_post_ffw_norm:
            items.append(Norm(p + "post_ffw_norm/scale", offset=1.0))
        return items


class Gemma2Adapter(GemmaAdapter):
    """A `GemmaBackbone` with post-branch norms (Gemma 2): a post-norm family,
    so `projection="auto"` selects coordinates."""

    family = "gemma2"
    post_norm = True

    def accepts(self, backbone):
        return _post_norms(backbone)


def _post_norms(backbone):
    return bool(backbone.use_post_attention_norm or backbone.use_post_ffw_norm)


class Gemma3Adapter(GemmaAdapter):
    """Gemma 3, text-only: Gemma 2's layout with per-head query/key norms.

    The query/key norms act on one head's `head_dim` vector, which RoPE keeps
    at the teacher's width, so they are copied. Local (sliding-window,
    wavelength 10⁴) and global (10⁶) layers follow the block index (five
    local, then one global) in teacher and student alike. A vision encoder
    or the embedding-model head is refused: the adapter does not describe
    their weights.
    """

    family = "gemma3"
    backbone_class = "Gemma3Backbone"
    # Every released Gemma 3 has post-branch norms (see the module docstring).
    post_norm = True
    # `ffw_gating` and `ffw_gating_2` each have `intermediate_dim` outputs.
    intermediate_units = 1
    options = dict(
        GemmaAdapter.options,
        use_query_key_norm=None,
        local_rope_scaling_factor=None,
        global_rope_scaling_factor=None,
        use_bidirectional_attention=None,
        # Read only with a vision encoder, which is refused.
        image_size=None,
        vision_encoder=(None,),
        is_embedding_model=(False,),
        pooling_intermediate_dim=None,
        embedding_dim=None,
    )

    def accepts(self, backbone):
        return True

    def block(self, backbone, index):
        items = super().block(backbone, index)
        if backbone.use_query_key_norm:
            a = f"decoder_block_{index}/attention/"
            items += [Copy(a + "query_norm/scale"), Copy(a + "key_norm/scale")]
        return items
