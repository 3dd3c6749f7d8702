"""A model where it runs, for the perplexity protocol: a `.gguf` file in
llama.cpp itself, anything else (or a `.gguf` file asked to) in Keras.

A runner tokenizes text as its runtime does and returns float32 logits for
the positions of one chunk from `first` on, each chunk evaluated alone.
"""

import os

import numpy as np

RUNTIMES = ("auto", "keras", "llama.cpp")


class LlamaCppRunner:
    """A `.gguf` file run by llama.cpp (`keras_guide.gguf.runtime.Session`),
    with the defaults of `llama-perplexity` (a float16 key/value cache,
    flash attention where llama.cpp picks it).

    Args:
        path: str. The `.gguf` file.
        context: int. The chunk length.
        threads: int or None. CPU threads. Defaults to every core.
    """

    runtime = "llama.cpp"

    def __init__(self, path, context, threads=None):
        from keras_guide.gguf import runtime

        self.path = os.fspath(path)
        self._session = runtime.Session(path, context, threads=threads)
        self.vocabulary_size = self._session.vocabulary_size
        self.add_bos = self._session.add_bos
        self.bos_id = self._session.bos_id
        self.context_length = self._session.context_length

    def tokenize(self, text):
        return self._session.tokenize(text)

    def logits(self, tokens, first):
        return self._session.logits(tokens, first)

    def close(self):
        self._session.close()


class KerasRunner:
    """A Keras causal LM (a KerasHub task model, e.g. from `load_gguf`, a
    `.keras` file or a preset folder).

    Text is tokenized by `encoder` (`keras_guide.workflows.text.model_encoder`
    gives the preprocessor's tokenizer: for a GGUF vocabulary, llama.cpp's own
    algorithm), with the start token first where it sets `start_token_id`.

    Args:
        model: the model.
        path: str. Where it came from (for messages). Defaults to "model".
        encoder: an encoder (`encode(text)`, `start_token_id`), or None for a
            model that reads another model's tokens. Defaults to None.
    """

    runtime = "keras"

    def __init__(self, model, path="model", encoder=None):
        from keras_guide._predict import predictor
        from keras_guide.adapters import backbone_of

        self.path = os.fspath(path)
        self._model = model
        self._predict = predictor(model)
        self._encoder = encoder
        backbone = backbone_of(model)
        self.vocabulary_size = int(backbone.vocabulary_size)
        start = getattr(self._encoder, "start_token_id", None)
        self.add_bos, self.bos_id = start is not None, start
        self.context_length = backbone.get_config().get("max_sequence_length")

    def tokenize(self, text):
        if self._encoder is None:
            raise ValueError(
                f"{self.path} has no tokenizer (no preprocessor): list first a model "
                "that has one, whose tokens it shares."
            )
        head = [self.bos_id] if self.add_bos else []
        return np.asarray(head + self._encoder.encode(text), np.int32)

    def logits(self, tokens, first):
        import keras

        tokens = np.asarray(tokens, np.int32)[None]
        x = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
        z = keras.ops.convert_to_numpy(self._predict(x))
        return np.asarray(z[0, first:], np.float32)

    def close(self):
        pass
