"""Hugging Face checkpoints of KerasHub models (needs `keras-guide[hf]`).

`save_hf` writes a KerasHub Llama-family or Gemma 3 model (a student of any
size) as a folder `transformers` loads (`AutoModelForCausalLM`,
`AutoTokenizer`), whose tokenizer gives llama.cpp's token ids. The way back
is KerasHub's own converter: `keras_hub.models.CausalLM.from_preset(folder)`.
"""

from keras_guide.hf.tokenizer import TokenizerError
from keras_guide.hf.writer import save_hf

__all__ = ["TokenizerError", "save_hf"]
