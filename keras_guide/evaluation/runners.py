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

    Text is tokenized by its preprocessor's tokenizer (for a GGUF vocabulary,
    llama.cpp's own algorithm), with the start token first where the
    preprocessor adds one.

    Args:
        model: the model.
        path: str. Where it came from (for messages). Defaults to "model".
    """

    runtime = "keras"

    def __init__(self, model, path="model"):
        from keras_guide._predict import predictor
        from keras_guide.adapters import backbone_of
        from keras_guide.workflows import text

        self.path = os.fspath(path)
        self._model = model
        self._predict = predictor(model)
        self._encoder = text.model_encoder(model)
        backbone = backbone_of(model)
        self.vocabulary_size = int(backbone.vocabulary_size)
        start = getattr(self._encoder, "start_token_id", None)
        self.add_bos, self.bos_id = start is not None, start
        self.context_length = backbone.get_config().get("max_sequence_length")

    def tokenize(self, text):
        if self._encoder is None:
            raise ValueError(
                f"{self.path} has no tokenizer (no preprocessor): list first a model "
                "that has one, whose tokens it shares.")
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


def open_runner(path, context, runtime="auto", threads=None):
    """The runner for a model argument (a path or a packaged name).

    Args:
        path: str. A `.gguf` file, a `.keras` file, a preset folder, or a
            packaged name (`smollm2`, `gemma3`).
        context: int. The chunk length.
        runtime: str. `"auto"` (llama.cpp for a `.gguf` file, Keras for the
            rest), `"keras"` (a `.gguf` file imported by `load_gguf`) or
            `"llama.cpp"` (a `.gguf` file only). Defaults to "auto".
        threads: int or None. llama.cpp's CPU threads.

    Raises:
        ValueError: `runtime` is unknown, or llama.cpp asked for a model that
            is not a `.gguf` file.
    """
    from keras_guide.workflows import inputs

    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}. Received: "
                         f"runtime={runtime!r}")
    resolved = os.fspath(inputs.resolve_model(path))
    is_gguf = resolved.endswith(".gguf")
    if runtime == "llama.cpp" and not is_gguf:
        raise ValueError(f"{path}: llama.cpp runs .gguf files only; run it in Keras "
                         "(--runtime keras or auto) or export it first.")
    if is_gguf and runtime != "keras":
        return LlamaCppRunner(resolved, context, threads=threads)
    return KerasRunner(inputs.load_model(resolved), path)
