"""Mixtral: Mistral's attention with a sparse mixture-of-experts MLP.

Rule for the experts and the router: the student keeps every expert (its
`num_experts` and `top_k` must be the teacher's), and each expert keeps the
same uniformly selected neurons (`"neurons"` on every expert's MLP axis).
The router is a `(d, experts)` kernel reading the normalized stream: it is
read through `Mᵀ` like any reader, with the MLP norm folded into it under
`norm="fold"`, so a full-width student routes every token to the teacher's
experts with the teacher's weights, and a narrower one routes by the
teacher's router applied to the reconstructed input `x_S Mᵀ`.
"""

from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Write
from keras_guide.adapters.llama import LlamaAdapter


class MixtralAdapter(LlamaAdapter):
    family = "mixtral"
    backbone_class = "MixtralBackbone"
    tie_option = None
    options = {
        "num_experts": None,
        "top_k": None,
        "router_jitter_noise": None,
        "router_aux_loss_coef": None,
        "rope_max_wavelength": None,
        "rope_scaling_factor": None,
        "sliding_window": None,
        "layer_norm_epsilon": None,
    }

    def mlp(self, backbone, p, mlp_norm):
        moe = _moe_prefix(backbone, p)
        experts = moe + "experts/expert_feedforward_"
        return [
            Read(moe + "sparse_feedforward_gate_dense/kernel", 0, {}, mlp_norm),
            Read(experts + "gate_dense", 1, {2: "neurons"}, mlp_norm),
            Read(experts + "intermediate_dense", 1, {2: "neurons"}, mlp_norm),
            Write(experts + "output_dense", 2, {1: "neurons"}),
        ]


_ROUTER = "sparse_feedforward_gate_dense/kernel"


def _moe_prefix(backbone, block):
    """The MoE layer's path prefix inside `block` (e.g. `transformer_layer_1/`).

    KerasHub leaves the layer unnamed, so Keras numbers it in creation order
    (`mixtral_sparse_moe_block_7`): a teacher and its student name it
    differently, and each backbone's own name is read from its weights.
    """
    for weight in backbone.weights:
        if weight.path.startswith(block) and weight.path.endswith("/" + _ROUTER):
            return weight.path[: -len(_ROUTER)]
    raise ValueError(
        f"The mixtral adapter finds no router `{block}.../{_ROUTER}` in "
        f"`{backbone.name}`: its layout is not KerasHub's Mixtral."
    )
