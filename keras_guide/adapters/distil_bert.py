"""DistilBERT: BERT's post-LayerNorm encoder blocks under KerasHub's
`token_and_position_embedding` layer; no segments, no pooler.

Exact at full width with `projection="select"` (the default for this
family), approximate with PCA, as for BERT (docs/method.md §2).
"""

from keras_guide.adapters.roberta import RobertaAdapter


class DistilBertAdapter(RobertaAdapter):
    family = "distil_bert"
    backbone_class = "DistilBertBackbone"
    embedding_prefix = "token_and_position_embedding/"
