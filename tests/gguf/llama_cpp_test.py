"""llama.cpp itself as the reference (`llama-cpp-python`, built from source).

CI installs it, so these tests fail rather than skip when it is missing. On
tiny models (every backend): files written by `save_gguf` run in llama.cpp
with the Keras model's logits and greedy continuation. On the two real
checkpoints (JAX; they are slow): llama.cpp's token ids against ours on
prose, code, whitespace, digits, accented letters, CJK and emoji; the
imported teacher's logits against llama.cpp's; and exported students in
float32, float16 and q8_0 within the bounds measured here.

llama.cpp runs with a float32 key/value cache for the parity checks (its
default float16 cache alone moves the logits by ~1e-4 nats of KL).
"""

import keras
import llama_cpp  # noqa: F401 (fails, rather than skips, where it is missing)
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")

import keras_guide  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from keras_guide.gguf import runtime  # noqa: E402
from keras_guide.gguf import save_gguf  # noqa: E402
from tests.harness import checkpoints as real_checkpoints  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402

# Text that byte-level BPE and SentencePiece both find hard: indentation,
# runs of spaces and tabs, leading and trailing spaces, digits, accented
# letters, other scripts, emoji (with a zero-width joiner), CRLF.
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "    def f(x):\n        return x  *  2\n\n\tif y:\n\t\tpass\n",
    "   leading spaces and trailing spaces   ",
    "Numbers: 1234567 3.14159 2026-12-02 ½ ² ٣",
    "Ünïcödé: café, naïve, Straße, Ελληνικά, русский текст, עברית, العربية",
    "中文文本，日本語のテキスト、한국어 텍스트",
    "Emoji: 😀🎉👍🏽 🇫🇷 ❤️ and ZWJ 👨\u200d👩\u200d👧",
    "multiple   spaces\t\ttabs\n\n\nnewlines\r\nCRLF",
    "<|im_start|>user\nhi<|im_end|> <bos> <start_of_turn>",
    "it's they're we've I'm you'll he'd IT'S",
    'x = [i**2 for i in range(10)]  # comment\n    print(f"{x!r}")',
    " ",
    "\n",
    "a\u00a0b\u2003c\u3000d",
]


def _llama(path, **kwargs):
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=256, verbose=False, n_threads=2, **kwargs
    )


def llama_cpp_logits(path, ids, kv_float32=True):
    """llama.cpp's logits for `ids`, `(len, V)` float64 (in a process of its
    own, as the library runs it: beside PyTorch the OpenMP runtimes clash)."""
    return runtime.logits(path, [ids], kv_float32=kv_float32)[0].astype(np.float64)


def llama_cpp_follows(path, ids, continuation):
    """Whether llama.cpp's greedy choice after `ids` is `continuation`, token
    by token: its argmax at every position of the continued sequence (the
    same tokens greedy generation would feed it, one call instead of one per
    token)."""
    z = llama_cpp_logits(path, list(ids) + list(continuation))
    chosen = z[len(ids) - 1 : -1].argmax(-1).tolist()
    return chosen == list(continuation)


def keras_logits(lm, ids):
    x = {
        "token_ids": np.asarray(ids, "int32")[None],
        "padding_mask": np.ones((1, len(ids)), "int32"),
    }
    return keras.ops.convert_to_numpy(lm(x)).astype(np.float64)[0]


def keras_greedy(lm, ids, steps):
    # One fixed length (padding after the text changes nothing before it in a
    # causal model), so JAX compiles the model once.
    out = [int(i) for i in ids]
    length = len(out) + steps
    for _ in range(steps):
        x = {
            "token_ids": np.asarray([out + [0] * (length - len(out))], "int32"),
            "padding_mask": np.asarray(
                [[1] * len(out) + [0] * (length - len(out))], "int32"
            ),
        }
        z = keras.ops.convert_to_numpy(lm(x))[0, len(out) - 1]
        out.append(int(np.argmax(z)))
    return out[len(ids) :]


def kl_and_agreement(reference, other):
    """Mean KL(reference || other) per token and top-1 agreement."""
    log_p = reference - np.logaddexp.reduce(reference, -1, keepdims=True)
    log_q = other - np.logaddexp.reduce(other, -1, keepdims=True)
    kl = float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())
    return kl, float((reference.argmax(-1) == other.argmax(-1)).mean())


# Tiny models, every backend.


def _tiny_student(tmp_path, write):
    teacher = load_gguf(write(tmp_path / "teacher.gguf"))
    # Gemma: all six blocks (five sliding-window, one global) and heads wider
    # than width / heads; Llama: one block, heads as wide as the teacher's.
    gemma = "gemma" in write.__name__
    student = keras_guide.build_student(
        teacher,
        num_layers=6 if gemma else 1,
        hidden_dim=24 if gemma else 16,
        num_heads=2,
        num_key_value_heads=1,
        intermediate_dim=40,
    )
    keras_guide.guide(teacher, student)
    return student


@pytest.mark.parametrize("write", [tiny.write_llama, tiny.write_gemma3])
def test_tiny_exported_students_run_in_llama_cpp_as_in_keras(tmp_path, write):
    student = _tiny_student(tmp_path, write)
    path = save_gguf(student, tmp_path / "student.gguf")
    # Longer than the tiny Gemma's sliding window of 3: both masks are used.
    ids = tiny.token_ids(student.backbone.vocabulary_size, length=12)
    kl, agreement = kl_and_agreement(
        keras_logits(student, ids), llama_cpp_logits(path, ids)
    )
    assert kl < 1e-5 and agreement == 1.0, (kl, agreement)
    assert llama_cpp_follows(path, ids, keras_greedy(student, ids, 6))


@pytest.mark.parametrize("write", [tiny.write_llama, tiny.write_gemma3])
def test_tiny_tokenizers_give_llama_cpps_ids(tmp_path, write):
    path = write(tmp_path / "model.gguf")
    lm = load_gguf(path)
    reference = _llama(path, vocab_only=True)
    port = lm.preprocessor.tokenizer.llama_cpp_tokenizer()
    for text in TEXTS:
        assert port.encode(text, add_special=False) == reference.tokenize(
            text.encode(), add_bos=False, special=False
        ), text


# The real checkpoints (JAX only: minutes, and backend-independent checks of
# the file and the tokenizer; the tiny tests cover the backends).

real = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="real checkpoints against llama.cpp run on JAX only, to keep CI in time",
)
# Bounds from measurement (2026-12-02, this CPU): the imported models agree
# with llama.cpp's quantized arithmetic to KL 0.0021 (SmolLM2, top-1 98 %)
# and 0.0038 (Gemma 3, 95 %) nats/token on the paragraph.
IMPORT_BOUNDS = {"smollm2": (0.005, 0.95), "gemma3": (0.01, 0.9)}
# A quarter-size student of each, guided (data-free) and not trained.
STUDENTS = {
    "smollm2": dict(
        num_layers=8,
        hidden_dim=384,
        num_heads=6,
        num_key_value_heads=2,
        intermediate_dim=1024,
    ),
    "gemma3": dict(
        num_layers=7,
        hidden_dim=384,
        num_heads=2,
        num_key_value_heads=1,
        intermediate_dim=1024,
    ),
}


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def checkpoint(request):
    if keras.backend.backend() != "jax":
        pytest.skip("real checkpoints run on JAX only")
    path = real_checkpoints.path(request.param)
    lm = load_gguf(path)
    ids = real_checkpoints.token_ids(lm, real_checkpoints.PARAGRAPH)
    return request.param, path, lm, ids


@real
@pytest.mark.slow
def test_real_tokenizers_give_llama_cpps_ids(checkpoint):
    name, path, lm, ids = checkpoint
    reference = _llama(path, vocab_only=True)
    tokenizer = lm.preprocessor.tokenizer
    for text in TEXTS + [real_checkpoints.PARAGRAPH]:
        want = reference.tokenize(text.encode(), add_bos=False, special=False)
        # The KerasHub tokenizer (what `generate` and the preprocessors use).
        got = keras.ops.convert_to_numpy(tokenizer(text)).tolist() if text else []
        assert got == want, (name, text)
    assert ids.tolist() == reference.tokenize(
        real_checkpoints.PARAGRAPH.encode(), add_bos=True, special=False
    )


@real
@pytest.mark.slow
def test_real_imports_agree_with_llama_cpp(checkpoint):
    name, path, lm, ids = checkpoint
    kl, agreement = kl_and_agreement(
        llama_cpp_logits(path, ids, kv_float32=False), keras_logits(lm, ids)
    )
    bound, top1 = IMPORT_BOUNDS[name]
    assert kl < bound and agreement >= top1, (name, kl, agreement)


@real
@pytest.mark.slow
def test_real_teacher_exported_runs_in_llama_cpp_as_in_keras(checkpoint, tmp_path):
    name, path, lm, ids = checkpoint
    out = save_gguf(lm, tmp_path / "teacher.gguf", metadata_from=path)
    kl, agreement = kl_and_agreement(keras_logits(lm, ids), llama_cpp_logits(out, ids))
    assert kl < 1e-4 and agreement == 1.0, (name, kl, agreement)
    for prompt in ("The capital of France is", "def add(a, b):\n    return"):
        start = real_checkpoints.token_ids(lm, prompt)
        assert llama_cpp_follows(out, start, keras_greedy(lm, start, 8)), (name, prompt)


# KL bounds of exported quarter-size students (measured: float32 2e-6 /
# 2.4e-5, float16 2.8e-5 / 8.5e-4, q8_0 0.020 / 0.48 for SmolLM2 / Gemma 3:
# an untrained guided student is far more sensitive to rounding than the
# teacher).
STUDENT_BOUNDS = {
    "float32": {"smollm2": 1e-4, "gemma3": 1e-4},
    "float16": {"smollm2": 2e-4, "gemma3": 3e-3},
    "q8_0": {"smollm2": 0.05, "gemma3": 1.0},
}


@real
@pytest.mark.slow
def test_real_students_exported_run_in_llama_cpp(checkpoint, tmp_path):
    name, path, lm, ids = checkpoint
    student = keras_guide.build_student(lm, **STUDENTS[name])
    keras_guide.guide(lm, student)
    expected = keras_logits(student, ids)
    for dtype, bounds in STUDENT_BOUNDS.items():
        # The tokenizer derived from the student's own (not copied).
        out = save_gguf(student, tmp_path / f"{dtype}.gguf", dtype=dtype)
        kl, _ = kl_and_agreement(expected, llama_cpp_logits(out, ids))
        assert kl < bounds[name], (name, dtype, kl)


def test_a_llama_cpp_process_that_crashes_or_fails_is_named(tmp_path):
    path = tmp_path / "m.gguf"
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(
        RuntimeError,
        match=r"llama.cpp crashed on .*m.gguf \(SIGSEGV\)"
        r".*AVX2",
    ):
        runtime._run_child(path, crash)
    with pytest.raises(RuntimeError, match=r"llama.cpp could not run .*m.gguf: boom"):
        runtime._run_child(path, "import sys; sys.exit('boom')")
