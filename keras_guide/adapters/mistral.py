"""Mistral: the Llama layout with an always-untied head, an optional head
width and sliding-window attention."""

from keras_guide.adapters.llama import LlamaAdapter


class MistralAdapter(LlamaAdapter):
    """Llama's weight names and maths; `head_dim=None` means
    `hidden_dim // num_query_heads`. The sliding window is an option teacher
    and student share (`build_student` copies it); the head is never tied."""

    family = "mistral"
    backbone_class = "MistralBackbone"
    config_keys = dict(LlamaAdapter.config_keys, head_dim="head_dim")
    tie_option = None
    options = {
        "rope_max_wavelength": None,
        "rope_scaling_factor": None,
        "layer_norm_epsilon": None,
        "sliding_window": None,
    }
