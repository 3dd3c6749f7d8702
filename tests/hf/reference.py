"""The two references of `tests/hf/`, each in a process of its own:
`transformers` (`transformers_child.py`, which never imports keras_guide) and
llama.cpp (`llama-cpp-python`, through `keras_guide.gguf.runtime`)."""

import json
import os
import subprocess
import sys

import numpy as np

from keras_guide.gguf import runtime

CHILD = os.path.join(os.path.dirname(__file__), "transformers_child.py")


def transformers_answers(jobs, folder):
    """`transformers_child.py` on `jobs` (a list of dicts, see there).

    Returns:
        `(answers, logits)`: a dict per job, and its float64 logits (`None`
        for a job without `ids`).
    """
    request = os.path.join(os.fspath(folder), "transformers_request.json")
    with open(request, "w") as f:
        json.dump(jobs, f)
    done = subprocess.run(
        [sys.executable, CHILD, request],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.load(open(request + ".out.json"))
    with np.load(request + ".out.npz") as saved:
        logits = {k: saved[k].astype(np.float64) for k in saved.files}
    return (
        [answers[str(i)] for i in range(len(jobs))],
        [logits.get(str(i)) for i in range(len(jobs))],
    )


_TOKENIZE = r"""
import json, sys
import llama_cpp
request = json.load(sys.stdin)
llm = llama_cpp.Llama(model_path=request["path"], vocab_only=True, verbose=False)
out = {str(special): [llm.tokenize(t.encode(), add_bos=False, special=special)
                      for t in request["texts"]] for special in (False, True)}
out["with_bos"] = [llm.tokenize(t.encode(), add_bos=True, special=True)
                   for t in request["texts"]]
vocab = llama_cpp.llama_model_get_vocab(llm.model)
out["eog"] = [i for i in range(llama_cpp.llama_vocab_n_tokens(vocab))
              if llama_cpp.llama_vocab_is_eog(vocab, i)]
print(json.dumps(out))
"""


def llama_cpp_ids(path, texts):
    """llama.cpp's ids for `texts`: `{False: ..., True: ...}` by whether
    special tokens written in the text are parsed (`parse_special`),
    `"with_bos"` (parsed, the start token added where the file says so), and
    `"eog"`: the tokens llama.cpp ends generation at."""
    done = runtime._run_child(
        path,
        _TOKENIZE,
        stdin=json.dumps({"path": os.fspath(path), "texts": list(texts)}),
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        False: out["False"],
        True: out["True"],
        "with_bos": out["with_bos"],
        "eog": out["eog"],
    }


_GENERATE = r"""
import json, sys
import numpy as np
import llama_cpp
request = json.load(sys.stdin)
llm = llama_cpp.Llama(model_path=request["path"], n_ctx=256, verbose=False,
                      n_threads=2, type_k=0, type_v=0, logits_all=True)
prompt = llm.tokenize(request["prompt"].encode(), add_bos=True, special=True)
llm.eval(prompt)
out = []
for _ in range(request["steps"]):
    token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    out.append(token)
    llm.eval([token])
print(json.dumps({"prompt_ids": prompt, "generated": out}))
"""


def llama_cpp_greedy(path, prompt, steps):
    """llama.cpp's greedy continuation of `prompt` (its own tokens, float32
    key/value cache): `{"prompt_ids", "generated"}`."""
    done = runtime._run_child(
        path,
        _GENERATE,
        stdin=json.dumps(
            {"path": os.fspath(path), "prompt": prompt, "steps": int(steps)}
        ),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def kl_and_agreement(reference, other):
    """Mean KL(reference ‖ other) per token and top-1 agreement."""
    log_p = reference - np.logaddexp.reduce(reference, -1, keepdims=True)
    log_q = other - np.logaddexp.reduce(other, -1, keepdims=True)
    kl = float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())
    return kl, float((reference.argmax(-1) == other.argmax(-1)).mean())
