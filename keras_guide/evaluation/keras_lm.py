"""`KerasLM`: an lm-evaluation-harness model over a Keras causal LM.

`KerasLM` is an `lm_eval.api.model.LM` over any KerasHub causal LM this
project makes or imports (`keras_guide.load_gguf` models, `.keras` students
of `keras-guide compress`, presets), so `lm_eval.simple_evaluate` scores a
teacher and its student on the same tasks. It follows lm-eval's
`HFLM` (`lm_eval/models/huggingface.py`) wherever a score depends on it:

- tokens: a GGUF vocabulary is encoded with llama.cpp's algorithm (the ids
  llama.cpp gives), any other KerasHub tokenizer on the whole string; the
  start token opens a sequence where the preprocessor adds one;
- `loglikelihood(context, continuation)`: the whole string and the context
  are encoded, the continuation is the difference, trailing whitespace of
  the context moves to the continuation; an empty context is the prefix
  token (the start token where the tokenizer adds one, else the end token);
  a pair longer than `max_length + 1` tokens loses tokens from the left;
- `loglikelihood_rolling`: the text in disjoint windows of `max_length`
  (`lm_eval.utils.get_rolling_token_windows`, `make_disjoint_window`), the
  first conditioned on the prefix token; every token is scored once;
- `generate_until`: greedy, to the end token, one of `until` or
  `max_gen_toks`; the context keeps its last `max_length - max_gen_toks`.

Requests are sorted by length (longest first) and run in right-padded
batches of `batch_size`, one forward pass per batch (per generated token in
`generate_until`), with lengths rounded up to a few sizes so a compiled
backend traces a handful of shapes. Right padding never changes a causal
model's logits at the real positions. Per-token log-probabilities are
computed in float32 where the model runs (`log softmax(z)[y] = z_y −
logsumexp(z)`); only `(batch, length)` values come back, summed in float64
on the host.

lm-eval is an optional extra: `pip install 'keras-guide[eval]'`.
"""

import keras
import numpy as np

from keras_guide._predict import logits_model

_INSTALL = (
    "keras_guide.evaluation.harness needs lm-evaluation-harness, which is not "
    "installed. Install it with: pip install 'keras-guide[eval]' (or pip install "
    "lm-eval)"
)

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.utils import handle_stop_sequences
    from lm_eval.models.utils import normalize_gen_kwargs
    from lm_eval.models.utils import postprocess_generated_text
    from lm_eval.utils import get_rolling_token_windows
    from lm_eval.utils import make_disjoint_window
except ImportError as error:  # pragma: no cover (the extra is installed in CI)
    raise ImportError(_INSTALL) from error

# lm-eval's HFLM falls back to this context when a model states none.
DEFAULT_MAX_LENGTH = 2048


def padded_length(n, max_length):
    """The length a batch whose longest row has `n` tokens is padded to: the
    smallest of 16, 24, 32, 48, 64, 96, ... (powers of two and 1.5 times them)
    that holds `n`, at most `max(n, max_length)`.

    A compiled backend (JAX, `tf.function`) traces once per input shape, so
    a handful of lengths keeps tracing time bounded; padding wastes at most a
    third of a batch.
    """
    size = 16
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return max(n, min(size, max_length))


class _Scorer(keras.Model):
    """`{token_ids, padding_mask, targets} -> (log p(target), argmax)` per
    position, both `(batch, length)`: the vocabulary axis never leaves the
    device."""

    def __init__(self, lm, **kwargs):
        super().__init__(**kwargs)
        self.lm = logits_model(lm)

    def call(self, inputs):
        logits = self.lm(
            {"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}
        )
        logits = keras.ops.cast(logits, "float32")
        target = keras.ops.expand_dims(inputs["targets"], -1)
        picked = keras.ops.take_along_axis(logits, target, axis=-1)[..., 0]
        log_prob = picked - keras.ops.logsumexp(logits, axis=-1)
        return log_prob, keras.ops.cast(keras.ops.argmax(logits, axis=-1), "int32")


def _text(value):
    """A detokenized value (tensor, NumPy array, bytes or str) as a `str`."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value)


class KerasLM(TemplateLM):
    """An lm-evaluation-harness model over a Keras causal LM.

    Args:
        model: a KerasHub `CausalLM` (any Keras model mapping
            `{"token_ids", "padding_mask"}` to logits) whose
            `preprocessor.tokenizer` is its tokenizer, or with `tokenizer`.
        batch_size: int, requests per forward pass. Defaults to 8.
        max_length: int, the longest sequence the model sees (the context
            lm-eval's truncation and rolling windows use). Defaults to the
            backbone's `max_sequence_length`, else 2048 (HFLM's default).
        max_gen_toks: int, tokens `generate_until` generates when a task does
            not say. Defaults to 256 (HFLM's).
        tokenizer: a KerasHub tokenizer, for a model without a preprocessor.
            Defaults to `model.preprocessor.tokenizer`.
        add_start_token: bool, whether sequences open with the tokenizer's
            start token. Defaults to the preprocessor's `add_start_token`
            (False without a preprocessor).
        progress: bool, show a progress bar per request type. Defaults to
            True.

    Raises:
        ValueError: the model has no tokenizer, or an argument is out of range.
    """

    def __init__(
        self,
        model,
        batch_size=8,
        max_length=None,
        max_gen_toks=256,
        tokenizer=None,
        add_start_token=None,
        progress=True,
    ):
        super().__init__()
        preprocessor = getattr(model, "preprocessor", None)
        if tokenizer is None:
            tokenizer = getattr(preprocessor, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "`model` has no preprocessor with a tokenizer: pass the tokenizer "
                "it was trained with (KerasLM(model, tokenizer=...)). Received: "
                f"model={type(model).__name__}"
            )
        for name, value in (
            ("batch_size", batch_size),
            ("max_gen_toks", max_gen_toks),
            ("max_length", max_length),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"`{name}` must be a positive integer. Received: {name}={value!r}"
                )
        if add_start_token is None:
            add_start_token = bool(getattr(preprocessor, "add_start_token", False))
        self.model = model
        self.tokenizer = tokenizer
        self._batch_size = int(batch_size)
        self._max_gen_toks = int(max_gen_toks)
        self._progress = bool(progress)
        backbone = getattr(model, "backbone", None)
        stated = (
            backbone.get_config().get("max_sequence_length")
            if backbone is not None
            else None
        )
        self._max_length = int(max_length or stated or DEFAULT_MAX_LENGTH)
        build = getattr(tokenizer, "llama_cpp_tokenizer", None)
        self._llama_cpp = build() if build is not None else None
        self._start = (
            getattr(tokenizer, "start_token_id", None) if add_start_token else None
        )
        end = getattr(tokenizer, "end_token_id", None)
        self._end = end if end is not None else getattr(tokenizer, "pad_token_id", 0)
        self._scorer = _Scorer(model, name="keras_lm_scorer")

    # ------------------------------------------------------------ properties
    @property
    def eot_token_id(self):
        return self._end

    @property
    def prefix_token_id(self):
        return self._start if self._start is not None else self._end

    @property
    def max_length(self):
        return self._max_length

    @property
    def max_gen_toks(self):
        return self._max_gen_toks

    @property
    def batch_size(self):
        return self._batch_size

    @property
    def tokenizer_name(self):
        return type(self.tokenizer).__name__

    def get_model_info(self):
        return {
            "model_class": type(self.model).__name__,
            "model_num_parameters": int(self.model.count_params()),
            "max_length": self.max_length,
        }

    # ------------------------------------------------------------ tokens
    def tok_encode(self, string, add_special_tokens=None, **kwargs):
        """`string`'s ids; with the start token first where the tokenizer adds
        one, unless `add_special_tokens` is False."""
        if self._llama_cpp is not None:
            ids = self._llama_cpp.encode(string, add_special=False)
        elif string:
            ids = np.asarray(keras.ops.convert_to_numpy(self.tokenizer(string)))
            ids = [int(i) for i in ids.reshape(-1)]
        else:
            ids = []
        if self._start is not None and add_special_tokens is not False:
            ids = [self._start] + ids
        return ids

    def tok_decode(self, ids):
        """The text of `ids`."""
        if not len(ids):
            return ""
        return _text(self.tokenizer.detokenize(np.asarray(ids, "int32")))

    # ------------------------------------------------------------ scoring
    def _forward(self, rows, targets):
        """Runs one padded batch.

        Args:
            rows: lists of input ids, each at most `max_length` long.
            targets: lists of the same lengths (the next token per position).

        Returns:
            `[(log_probs, argmax)]` per row, NumPy arrays of the row's length.
        """
        width = padded_length(max(len(r) for r in rows), self.max_length)
        count = max(len(rows), self.batch_size)
        ids = np.zeros((count, width), "int32")
        mask = np.zeros((count, width), "int32")
        target = np.zeros((count, width), "int32")
        for i in range(count):
            # Filler rows repeat the first one: an all-padding row could give NaN.
            j = i if i < len(rows) else 0
            row, goal = rows[j], targets[j]
            ids[i, : len(row)], target[i, : len(row)] = row, goal
            mask[i, : len(row)] = 1
        log_prob, greedy = self._scorer.predict_on_batch(
            {"token_ids": ids, "padding_mask": mask, "targets": target}
        )
        log_prob, greedy = np.asarray(log_prob), np.asarray(greedy)
        return [
            (log_prob[i, : len(r)], greedy[i, : len(r)]) for i, r in enumerate(rows)
        ]

    def _bar(self, total, desc, disable):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, disable=disable or not self._progress)

    def _score_pairs(self, pairs, desc, disable=False):
        """`(sum log p(continuation), greedy)` per `(context_ids, continuation_ids)`,
        in the order given."""
        for context, continuation in pairs:
            if not context or not continuation:
                raise ValueError(
                    "A loglikelihood request needs at least one context and one "
                    f"continuation token. Received: {len(context)} context and "
                    f"{len(continuation)} continuation tokens"
                )
            if len(continuation) > self.max_length:
                raise ValueError(
                    f"A continuation of {len(continuation)} tokens does not fit the "
                    f"model's max_length ({self.max_length}). Pass a larger "
                    "max_length if the model takes it."
                )
        full = [(c + x)[-(self.max_length + 1) :] for c, x in pairs]
        order = sorted(range(len(pairs)), key=lambda i: (-len(full[i]), full[i]))
        results = [None] * len(pairs)
        with self._bar(len(pairs), desc, disable) as bar:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                outputs = self._forward(
                    [full[i][:-1] for i in chunk], [full[i][1:] for i in chunk]
                )
                for i, (log_prob, greedy) in zip(chunk, outputs):
                    n = len(pairs[i][1])
                    wanted = np.asarray(pairs[i][1])
                    results[i] = (
                        float(np.sum(log_prob[-n:], dtype=np.float64)),
                        bool(np.array_equal(greedy[-n:], wanted)),
                    )
                bar.update(len(chunk))
        return results

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, **kwargs):
        results = self._score_pairs(
            [(c, x) for _, c, x in requests], "loglikelihood", disable_tqdm
        )
        for (request, _, _), answer in zip(requests, results):
            if request is not None:
                self.cache_hook.add_partial("loglikelihood", request, answer)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        windows, owner = [], []
        for index, request in enumerate(requests):
            (string,) = request.args
            tokens = self.tok_encode(string, add_special_tokens=False)
            for window in get_rolling_token_windows(
                token_list=tokens,
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            ):
                windows.append(make_disjoint_window(window))
                owner.append(index)
        scores = self._score_pairs(windows, "loglikelihood_rolling", disable_tqdm)
        totals = np.zeros(len(requests), np.float64)
        for index, (log_prob, _) in zip(owner, scores):
            totals[index] += log_prob
        results = [float(t) for t in totals]
        for request, total in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return results

    # ------------------------------------------------------------ generation
    def _generation_settings(self, gen_kwargs):
        kwargs = normalize_gen_kwargs(dict(gen_kwargs or {}), self.max_gen_toks)
        if kwargs.get("do_sample"):
            raise ValueError(
                "KerasLM generates greedily; a task asks for sampling. Set "
                "`do_sample: false` in its generation_kwargs. Received: "
                f"{gen_kwargs}"
            )
        eos = self.tok_decode([self.eot_token_id])
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        steps = int(kwargs.pop("max_gen_toks"))
        if steps >= self.max_length:
            raise ValueError(
                f"`max_gen_toks` ({steps}) must be below the model's max_length "
                f"({self.max_length}) to leave room for the context. Received: "
                f"max_gen_toks={steps}"
            )
        return until, steps

    def generate_until(self, requests, disable_tqdm=False):
        jobs = []
        for request in requests:
            context, gen_kwargs = request.args
            until, steps = self._generation_settings(gen_kwargs)
            ids = self.tok_encode(context)[-(self.max_length - steps) :]
            jobs.append({"ids": ids, "until": until, "steps": steps, "new": []})
        order = sorted(
            range(len(jobs)), key=lambda i: (-len(jobs[i]["ids"]), requests[i].args[0])
        )
        results = [None] * len(jobs)
        with self._bar(len(jobs), "generate_until", disable_tqdm) as bar:
            for start in range(0, len(order), self.batch_size):
                chunk = [jobs[i] for i in order[start : start + self.batch_size]]
                self._greedy(chunk)
                for i, job in zip(order[start : start + self.batch_size], chunk):
                    text = postprocess_generated_text(
                        self.tok_decode(job["new"]), job["until"], None
                    )
                    results[i] = text
                    self.cache_hook.add_partial(
                        "generate_until", requests[i].args, text
                    )
                bar.update(len(chunk))
        return results

    def _greedy(self, jobs):
        """Extends each job's `new` greedily, one forward pass per token for
        the rows still running."""
        running = list(jobs)
        while running:
            rows = [job["ids"] + job["new"] for job in running]
            outputs = self._forward(rows, rows)
            still = []
            for job, row, (_, greedy) in zip(running, rows, outputs):
                token = int(greedy[len(row) - 1])
                if token == self.eot_token_id:
                    continue
                job["new"].append(token)
                if len(job["new"]) >= job["steps"]:
                    continue
                text = self.tok_decode(job["new"])
                if any(stop and stop in text for stop in job["until"]):
                    continue
                still.append(job)
            running = still
