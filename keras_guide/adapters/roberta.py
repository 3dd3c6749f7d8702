"""RoBERTa and XLM-RoBERTa: BERT's post-LayerNorm encoder blocks, with token
and position embeddings only (no segments, no pooler).

`XLMRobertaBackbone` subclasses `RobertaBackbone` with the same weights, so
one adapter covers both. As for BERT (docs/method.md §2), the post-norm gains
sit on the residual stream: a full-width student is exact with
`projection="select"` (the default for this family), approximate with PCA.
"""

from keras_guide.adapters.base import Norm
from keras_guide.adapters.base import Table
from keras_guide.adapters.bert import BertAdapter


class RobertaAdapter(BertAdapter):
    family = "roberta"
    backbone_class = "RobertaBackbone"
    options = {}
    embedding_prefix = "embeddings/"

    def embeddings(self, backbone):
        e = self.embedding_prefix
        return [
            Table(e + "token_embedding/embeddings"),
            Table(e + "position_embedding/embeddings", positions=True),
            Norm("embeddings_layer_norm/gamma", "embeddings_layer_norm/beta"),
        ]
