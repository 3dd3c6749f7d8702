"""How the project scores a language model on text.

- `scores`: held-out cross-entropy (every table's number), logits,
  perplexity of one text, a student against its teacher.
- `harness` (imported on its own: it needs the `eval` extra, lm-eval):
  `evaluate_tasks`, lm-eval tasks scored on a Keras causal LM through
  `KerasLM` (`keras_lm`), an lm-evaluation-harness model over it.
"""

from keras_guide.evaluation.scores import compare
from keras_guide.evaluation.scores import heldout_cross_entropy
from keras_guide.evaluation.scores import log_softmax
from keras_guide.evaluation.scores import logits
from keras_guide.evaluation.scores import perplexity
from keras_guide.evaluation.scores import token_ids
