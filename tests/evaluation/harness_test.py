"""`keras_guide.evaluation.harness` against a direct float64 computation.

Tasks whose data are local JSON files written here (no network) run through
`lm_eval.simple_evaluate` on a tiny GGUF teacher with a real byte-level BPE
vocabulary; every score must equal the same log-likelihoods computed from
a float64 NumPy forward pass of the same file (`tests/harness/gguf_reference.py`,
independent of Keras), one unpadded sequence at a time, with HFLM's
conventions restated here.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from lm_eval.api.instance import Instance

import keras_guide
from keras_guide.evaluation import harness
from keras_guide.evaluation import keras_lm
from keras_guide.gguf import LlamaCppTokenizer
from keras_guide.gguf.reader import GGUFFile
from keras_guide.workflows import text as text_lib
from tests.harness import gguf_files
from tests.harness import gguf_reference
from tests.harness import models
from tests.harness.lm_eval_tasks import multiple_choice
from tests.harness.lm_eval_tasks import write_task

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_LENGTH = 16
QUESTIONS = [
    (
        "Where does the cat sleep?",
        ["on the mat", "in the sea", "at the inn", "under a tree"],
    ),
    ("What is the sun?", ["a star", "a stone", "the sea"]),
    (
        "Who sings in the morning, in the garden, near the old stone wall?",
        ["the thrush", "a teapot", "the rain", "nobody"],
    ),
    ("Which one is heavier?", ["iron", "air", "a feather"]),
    ("What do the bees make?", ["honey", "tea", "the weather"]),
    ("How are you?", ["fine", "the", "a long answer"]),
]
DOCUMENTS = [
    "The rain in the north set in at noon, and the river rose over the stones.",
    "She said: the answer is in the garden.\nThe garden is in the north.",
    "A short one.",
    "On the third day the ships turned east, then south, then east again, and the "
    "sailors sang their songs at the rails until the sea went dark around them.",
]
PROMPTS = ["The river", "Then she said", "In the north there is", "A"]
STEPS = 4


# ------------------------------------------------------------------ reference
class Reference:
    """HFLM's conventions over float64 logits of single unpadded sequences
    (`logits(ids) -> (len(ids), V)`)."""

    def __init__(self, model, logits, max_length=MAX_LENGTH):
        self.model = model
        self.logits = logits
        self.encoder = text_lib.model_encoder(model)
        self.start = self.encoder.start_token_id
        self.end = self.encoder.end_token_id
        self.prefix = self.end if self.start is None else self.start
        self.max_length = max_length

    def encode(self, string):
        head = [] if self.start is None else [self.start]
        return head + self.encoder.encode(string)

    def log_probs(self, ids):
        """`log p(ids[t + 1] | ids[: t + 1])` and whether it is the argmax."""
        log_p = models.log_softmax64(self.logits(ids)[:-1])
        rows = np.arange(len(ids) - 1)
        return log_p[rows, ids[1:]], log_p.argmax(-1) == np.asarray(ids[1:])

    def pair(self, context, continuation):
        if not context:
            rest = self.encoder.encode(continuation)
            head = [self.prefix]
        else:
            spaces = len(context) - len(context.rstrip())
            if spaces:
                continuation = context[-spaces:] + continuation
                context = context[:-spaces]
            head = self.encode(context)
            rest = self.encode(context + continuation)[len(head) :]
        return head, rest

    def loglikelihood(self, context, continuation):
        head, rest = self.pair(context, continuation)
        full = (head + rest)[-(self.max_length + 1) :]
        log_p, top = self.log_probs(full)
        return float(log_p[-len(rest) :].sum()), bool(top[-len(rest) :].all())

    def rolling(self, string):
        """Each token once: the first `max_length` after the prefix token, then
        chunks of `max_length`, each input the `max_length` tokens before its
        last target (so a short last chunk keeps a full context)."""
        tokens = self.encoder.encode(string)
        n, size = len(tokens), self.max_length
        first = min(size, n)
        total = self.log_probs([self.prefix] + tokens[:first])[0].sum()
        for start in range(first, n, size):
            end = min(start + size, n)
            window = tokens[end - size - 1 : end]
            total += self.log_probs(window)[0][-(end - start) :].sum()
        return float(total)

    def decode(self, ids):
        if not ids:
            return ""
        out = self.model.preprocessor.tokenizer.detokenize(np.asarray(ids, "int32"))
        return keras_lm._text(out)

    def generate(self, context, until, steps):
        until = until + [self.decode([self.end])]
        ids = self.encode(context)[-(self.max_length - steps) :]
        new = []
        while True:
            token = int(np.argmax(self.logits(ids + new)[-1]))
            if token == self.end:
                break
            new.append(token)
            if len(new) >= steps or any(s in self.decode(new) for s in until):
                break
        out = self.decode(new)
        for stop in until:
            out = out.split(stop)[0]
        return out


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = str(gguf_files.write_llama(tmp_path_factory.mktemp("llama") / "t.gguf"))
    return keras_guide.load_gguf(path), path


def _reference(model, path, max_length=MAX_LENGTH):
    return Reference(
        model, lambda ids: gguf_reference.llama_logits(path, ids), max_length
    )


def _instances(kind, arguments):
    return [Instance(kind, {}, args, i) for i, args in enumerate(arguments)]


# ------------------------------------------------------------------ tests
def test_task_scores_equal_a_direct_float64_computation(llama, tmp_path):
    llama, path = llama
    ref = _reference(llama, path)
    # Gold answers chosen from the reference so that accuracy is 1/2: half the
    # items' gold is the reference's top choice, half its bottom one.
    rows, expected_norm = [], []
    for i, (question, choices) in enumerate(QUESTIONS):
        context = f"Question: {question}\nAnswer:"
        lls = np.array([ref.loglikelihood(context, " " + c)[0] for c in choices])
        gold = int(np.argmax(lls) if i % 2 == 0 else np.argmin(lls))
        lengths = np.array([len(c) for c in choices], np.float64)
        expected_norm.append(float(np.argmax(lls / lengths) == gold))
        rows.append({"question": question, "choices": choices, "gold": gold})
    write_task(tmp_path, "kg_choice", rows, multiple_choice("acc", "acc_norm"))
    write_task(
        tmp_path,
        "kg_rolling",
        [{"page": d} for d in DOCUMENTS],
        """
        output_type: loglikelihood_rolling
        doc_to_text: ""
        doc_to_target: "{{page}}"
        metric_list:
          - metric: word_perplexity
          - metric: byte_perplexity
          - metric: bits_per_byte
        """,
    )
    # Half the targets are the reference's greedy text: exact_match is 1/2
    # only if the harness generates exactly that text for them.
    outputs = [ref.generate(p, ["\n"], STEPS) for p in PROMPTS]
    targets = [o if i % 2 == 0 else o + "never" for i, o in enumerate(outputs)]
    write_task(
        tmp_path,
        "kg_generate",
        [{"prompt": p, "target": t} for p, t in zip(PROMPTS, targets)],
        f"""
        output_type: generate_until
        doc_to_text: "{{{{prompt}}}}"
        doc_to_target: "{{{{target}}}}"
        generation_kwargs:
          until: ["\\n"]
          max_gen_toks: {STEPS}
          do_sample: false
        metric_list:
          - metric: exact_match
        """,
    )

    got = harness.evaluate_tasks(
        llama,
        ["kg_choice", "kg_rolling", "kg_generate"],
        include_path=str(tmp_path),
        batch_size=3,
        max_length=MAX_LENGTH,
        bootstrap_iters=0,
        progress=False,
    )

    assert got["kg_choice"]["acc"] == 0.5
    assert got["kg_choice"]["acc_norm"] == pytest.approx(np.mean(expected_norm))
    total = sum(ref.rolling(d) for d in DOCUMENTS)
    words = sum(len(d.split()) for d in DOCUMENTS)
    size = sum(len(d.encode()) for d in DOCUMENTS)
    rolling = got["kg_rolling"]
    assert rolling["word_perplexity"] == pytest.approx(np.exp(-total / words), rel=1e-4)
    assert rolling["byte_perplexity"] == pytest.approx(np.exp(-total / size), rel=1e-5)
    assert rolling["bits_per_byte"] == pytest.approx(-total / size / np.log(2), 1e-6)
    assert got["kg_generate"]["exact_match"] == 0.5


def test_batches_give_each_request_its_own_result(llama):
    llama, path = llama
    ref = _reference(llama, path)
    pairs = [
        ("The cat", " sat on the mat"),
        ("", "the rain in the north"),  # the prefix token is the context
        ("Answer: ", "the sea"),  # the trailing space joins the continuation
        (
            "A much longer context that runs past the window of the model, then "
            "some more words to be cut from the left",
            " and the end",
        ),
        ("The", " the the the"),
        ("In the north", "."),
        ("She", " said"),
    ]
    one = harness.KerasLM(llama, batch_size=1, max_length=MAX_LENGTH, progress=False)
    four = harness.KerasLM(llama, batch_size=4, max_length=MAX_LENGTH, progress=False)
    requests = _instances("loglikelihood", pairs)
    single, batched = one.loglikelihood(requests), four.loglikelihood(requests)
    expected = [ref.loglikelihood(c, x) for c, x in pairs]
    assert [g for _, g in batched] == [g for _, g in single] == [g for _, g in expected]
    # Padding to the batch's longest request changes float32 round-off only
    # (1.8e-6 relative seen on one TensorFlow CPU); a request scored against
    # another one's tokens would be off by whole nats.
    np.testing.assert_allclose(
        [v for v, _ in batched], [v for v, _ in single], rtol=1e-5
    )
    np.testing.assert_allclose(
        [v for v, _ in batched], [v for v, _ in expected], rtol=1e-5
    )

    rolling = _instances("loglikelihood_rolling", [(d,) for d in DOCUMENTS])
    np.testing.assert_allclose(
        four.loglikelihood_rolling(rolling),
        [ref.rolling(d) for d in DOCUMENTS],
        rtol=1e-5,
    )

    settings = {"until": ["e"], "max_gen_toks": 3}
    generate = _instances("generate_until", [(p, settings) for p in PROMPTS])
    expected = [ref.generate(p, ["e"], 3) for p in PROMPTS]
    assert four.generate_until(generate) == one.generate_until(generate) == expected


def test_a_start_token_opens_every_sequence(tmp_path):
    """A vocabulary that adds its start token (as Gemma's and Llama 2's do):
    it opens the context, stands for an empty one and conditions the first
    rolling window. Generation stops at the end token: here the one greedy
    decoding gives second after "The river"."""
    bos = {"tokenizer.ggml.add_bos_token": True}
    path = str(gguf_files.write_llama(tmp_path / "a.gguf", seed=1, metadata=bos))
    ids = LlamaCppTokenizer.from_gguf(GGUFFile(path)).encode("The river")
    first = int(np.argmax(gguf_reference.llama_logits(path, ids)[-1]))
    second = int(np.argmax(gguf_reference.llama_logits(path, ids + [first])[-1]))
    assert ids[0] == 1 and second != 1
    path = str(
        gguf_files.write_llama(
            tmp_path / "b.gguf",
            seed=1,
            metadata={**bos, "tokenizer.ggml.eos_token_id": second},
        )
    )
    model = keras_guide.load_gguf(path)
    ref = _reference(model, path)
    assert ref.start == 1
    lm = harness.KerasLM(model, batch_size=2, max_length=MAX_LENGTH, progress=False)
    assert lm.prefix_token_id == 1 and lm.tok_encode("the")[0] == 1
    pairs = [("the", " hat"), ("", "the sea"), ("then the", " tea")]
    got = lm.loglikelihood(_instances("loglikelihood", pairs))
    expected = [ref.loglikelihood(c, x)[0] for c, x in pairs]
    np.testing.assert_allclose([v for v, _ in got], expected, rtol=1e-5)
    document = DOCUMENTS[3]
    np.testing.assert_allclose(
        lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(document,)])),
        [ref.rolling(document)],
        rtol=1e-5,
    )
    settings = {"until": [], "max_gen_toks": 5}
    got = lm.generate_until(_instances("generate_until", [("The river", settings)]))
    expected = "" if first == second else ref.decode([first])
    assert got == [ref.generate("The river", [], 5)] == [expected]


def test_bad_tasks_get_one_line_naming_them(llama, tmp_path):
    llama, _ = llama
    write_task(
        tmp_path,
        "kg_missing_file",
        [],
        """
        output_type: loglikelihood_rolling
        doc_to_text: ""
        doc_to_target: "{{page}}"
        """,
    )
    os.remove(tmp_path / "kg_missing_file.jsonl")
    (tmp_path / "kg_hub.yaml").write_text(
        "task: kg_hub\ndataset_path: allenai/ai2_arc\ndataset_name: ARC-Easy\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: q\n"
        "doc_to_target: 0\ndoc_to_choice: ['a', 'b']\n"
    )
    lm = harness.KerasLM(llama, max_length=MAX_LENGTH, progress=False)
    with pytest.raises(
        ValueError,
        match=r"Task 'kg_hub' needs 'allenai/ai2_arc' "
        r"\(ARC-Easy\), which this machine cannot load",
    ) as info:
        harness.evaluate_tasks(lm, ["kg_hub"], include_path=str(tmp_path))
    assert "dataset_path: json" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(
        ValueError,
        match=r"Task 'kg_missing_file' needs 'json' with "
        r"data_files=.*kg_missing_file\.jsonl",
    ):
        harness.evaluate_tasks(lm, ["kg_missing_file"], include_path=str(tmp_path))
    with pytest.raises(
        ValueError,
        match=r"lm-eval knows no task 'hellaswagg' "
        r"\(close: hellaswag.*include_path",
    ):
        harness.evaluate_tasks(lm, ["hellaswagg"], include_path=str(tmp_path))
    with pytest.raises(ValueError, match="generates greedily"):
        lm.generate_until(
            _instances(
                "generate_until", [("a", {"do_sample": True, "temperature": 1.0})]
            )
        )
    with pytest.raises(ValueError, match="max_gen_toks.*below the model's max_length"):
        lm.generate_until(_instances("generate_until", [("a", {"max_gen_toks": 16})]))
    with pytest.raises(ValueError, match="no preprocessor with a tokenizer"):
        harness.KerasLM(models.gpt2())


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns a JAX process itself; running it once (under jax) suffices",
)
def test_lm_eval_is_optional():
    """`import keras_guide` never imports lm-eval; without it the harness
    module says what to install."""
    code = (
        "import sys; import keras_guide, keras_guide.evaluation\n"
        "assert 'lm_eval' not in sys.modules\n"
        "sys.modules['lm_eval'] = None\n"
        "try:\n    import keras_guide.evaluation.harness\n"
        "except ImportError as e:\n    print(e)\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pip install 'keras-guide[eval]'" in out.stdout
