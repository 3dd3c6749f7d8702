"""`llama-perplexity`'s numbers, checked against llama.cpp itself: its own
logits (llama-cpp-python's high-level API, in a process of its own) scored
with the protocol written out here, on text no test tuned to (a module of
Python's standard library). And the same model in Keras and in llama.cpp
gives the same numbers."""

import inspect
import json
import math
import subprocess
import sys
import textwrap

import llama_cpp  # noqa: F401 (fails, rather than skips, where it is missing)
import numpy as np
import pytest

from keras_guide.evaluation import llama_perplexity
from keras_guide.workflows import evaluate
from tests.harness import gguf_files

TEXT = inspect.getsource(textwrap)


def write(kind, path, **kwargs):
    """A tiny `.gguf` file llama.cpp loads (it needs a context length)."""
    if kind == "llama":
        kwargs.setdefault("metadata", {"llama.context_length": 128})
    else:
        kwargs.setdefault("context_length", 128)
    return getattr(gguf_files, f"write_{kind}")(path, **kwargs)


# llama.cpp's own logits, chunk by chunk, with the protocol written out:
# tokenized whole with special tokens, chunks of n_ctx with the start token
# first where the vocabulary adds one, the second half scored. Flash
# attention on: what llama-perplexity's default ("auto") picks on a CPU.
_REFERENCE = r"""
import json, sys
import numpy as np
import llama_cpp
r = json.load(sys.stdin)
n_ctx = r["context"]
llm = llama_cpp.Llama(model_path=r["path"], n_ctx=n_ctx, n_batch=n_ctx,
                      logits_all=True, flash_attn=True, verbose=False)
vocab = llama_cpp.llama_model_get_vocab(llm.model)
add_bos = llama_cpp.llama_vocab_get_add_bos(vocab)
ids = llm.tokenize(r["text"].encode(), add_bos=True, special=False)
nll = []
for c in range(min(len(ids) // n_ctx, r["chunks"])):
    chunk = ids[c * n_ctx:(c + 1) * n_ctx]
    fed = list(chunk)
    if add_bos:
        fed[0] = llm.token_bos()
    llm.reset()
    llm.eval(fed)
    z = np.array(llm.scores[:n_ctx], np.float64)
    for j in range(n_ctx // 2, n_ctx - 1):
        m = z[j].max()
        nll.append(float(m + np.log(np.exp(z[j] - m).sum()) - z[j][chunk[j + 1]]))
print(json.dumps({"nll": nll, "tokens": len(ids)}))
"""


def reference_nll(path, text, context, chunks):
    done = subprocess.run(
        [sys.executable, "-c", _REFERENCE],
        capture_output=True,
        text=True,
        input=json.dumps(
            {"path": str(path), "text": text, "context": context, "chunks": chunks}
        ),
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(paths_by_name, text, context, chunks, base=None, runtime="auto"):
    opened = {
        name: evaluate.open_runner(path, context, runtime)
        for name, path in paths_by_name.items()
    }
    try:
        ids, bos = llama_perplexity.shared_tokens(opened, text)
        return llama_perplexity.measure(
            opened, ids, context, bos, base=base, max_chunks=chunks, verbose=False
        )
    finally:
        for runner in opened.values():
            runner.close()


@pytest.mark.parametrize("writer", ["llama", "gemma3"])
def test_perplexity_is_llama_cpps_own(tmp_path, writer):
    """Gemma's vocabulary adds a start token (each chunk opens with it),
    the Llama file's does not."""
    path = write(writer, tmp_path / "m.gguf")
    ours = run({"m": path}, TEXT, 32, 5)["m"]
    ref = reference_nll(path, TEXT, 32, 5)
    nll = np.array(ref["nll"])
    assert ours["tokens"] == len(nll) == 5 * 15
    assert ours["chunks"] == 5
    assert ours["nll"] == pytest.approx(nll.mean(), rel=1e-6)
    error = math.sqrt((np.mean(nll**2) - nll.mean() ** 2) / (len(nll) - 1))
    assert ours["perplexity_error"] == pytest.approx(
        math.exp(nll.mean()) * error, rel=1e-4
    )


@pytest.mark.parametrize("writer", ["llama", "gemma3"])
def test_keras_and_llama_cpp_agree_on_the_same_model(tmp_path, writer):
    path = write(writer, tmp_path / "m.gguf", quant=gguf_files.Q.F32)
    opened = {
        "llama.cpp": evaluate.open_runner(path, 32),
        "keras": evaluate.open_runner(path, 32, runtime="keras"),
    }
    try:
        assert [r.runtime for r in opened.values()] == ["llama.cpp", "keras"]
        ids, bos = llama_perplexity.shared_tokens(opened, TEXT)
        np.testing.assert_array_equal(opened["keras"].tokenize(TEXT), ids)
        result = llama_perplexity.measure(
            opened, ids, 32, bos, base="llama.cpp", max_chunks=4, verbose=False
        )
    finally:
        opened["llama.cpp"].close()
    cpp, keras_figures = result["llama.cpp"], result["keras"]
    # llama.cpp's float16 key/value cache is the only difference.
    assert keras_figures["nll"] == pytest.approx(cpp["nll"], abs=2e-3)
    assert keras_figures["vs_base"]["kl"] < 1e-4
    assert keras_figures["vs_base"]["same_top"] > 0.97
    assert "vs_base" not in cpp


def test_a_context_above_the_models_is_refused(tmp_path):
    path = write("llama", tmp_path / "m.gguf", metadata={"llama.context_length": 64})
    with pytest.raises(
        ValueError,
        match=r"--context 128 is above m's context length "
        r"\(64 tokens\)",
    ):
        opened = {"m": evaluate.open_runner(path, 128)}
        try:
            llama_perplexity.check_context(opened, 128)
        finally:
            opened["m"].close()


def test_a_text_shorter_than_two_chunks_is_refused(tmp_path):
    path = write("llama", tmp_path / "m.gguf")
    with pytest.raises(ValueError, match=r"needs at least two chunks, 1024 tokens"):
        run({"m": path}, TEXT[:600], 512, None)


def test_models_with_other_vocabularies_are_refused(tmp_path):
    llama = write("llama", tmp_path / "llama.gguf")
    gemma = write("gemma3", tmp_path / "gemma.gguf")
    spm = write("llama", tmp_path / "spm.gguf", tokenizer="llama")
    with pytest.raises(ValueError, match="gemma has a vocabulary of .* llama of"):
        run({"llama": llama, "gemma": gemma}, TEXT, 32, 2, base="llama")
    with pytest.raises(
        ValueError, match="spm does not add a start token and gemma does"
    ):
        run({"gemma": gemma, "spm": spm}, TEXT, 32, 2)


def test_llama_cpp_runs_gguf_files_only(tmp_path):
    with pytest.raises(ValueError, match="llama.cpp runs .gguf files only"):
        evaluate.open_runner(str(tmp_path / "model.keras"), 32, runtime="llama.cpp")


def test_evaluate_writes_the_report_and_its_table(tmp_path):
    path = write("llama", tmp_path / "m.gguf")
    student = write("llama", tmp_path / "s.gguf", seed=1)
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    report = evaluate.evaluate(
        [str(student)],
        [str(text)],
        contexts=(32, 64),
        base=str(path),
        max_chunks=3,
        verbose=False,
    )
    assert list(report["results"]) == ["32", "64"]
    figures = report["results"]["32"]
    assert list(figures) == [str(path), str(student)]
    assert figures[str(student)]["vs_base"]["kl"] > 0.01
    assert report["text"]["characters"] == len(TEXT)
    evaluate.write(report, tmp_path / "out")
    table = (tmp_path / "out" / evaluate.TABLE_FILE).read_text()
    assert "### Context 64 (3 chunks, 93 scored tokens)" in table
    assert "(base)" in table
    saved = json.loads((tmp_path / "out" / evaluate.JSON_FILE).read_text())
    assert saved["results"]["64"][str(student)]["tokens"] == 3 * 31


@pytest.mark.slow
def test_the_cli_on_the_real_teacher_is_llama_cpps_own_and_keras_agrees(tmp_path):
    """SmolLM2-135M (Q4_1) on a standard-library module: `keras-guide eval`
    gives the reference's perplexity; the same file imported into Keras is
    within the Q4 arithmetic's difference (KL 0.0025 nats/token measured)."""
    from keras_guide import checkpoints
    from keras_guide import cli

    text = tmp_path / "argparse.txt"
    text.write_text(inspect.getsource(__import__("argparse"))[:12000])
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "eval",
                "smollm2",
                "--text",
                str(text),
                "--context",
                "256",
                "--chunks",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    ours = json.loads((out / evaluate.JSON_FILE).read_text())["results"]["256"]
    nll = np.array(
        reference_nll(checkpoints.path("smollm2"), text.read_text(), 256, 3)["nll"]
    )
    assert ours["smollm2"]["nll"] == pytest.approx(nll.mean(), rel=1e-6)
    assert ours["smollm2"]["tokens"] == len(nll) == 3 * 127
    keras_run = run({"smollm2": "smollm2"}, text.read_text(), 256, 3, runtime="keras")[
        "smollm2"
    ]
    assert keras_run["nll"] == pytest.approx(nll.mean(), abs=0.02)
