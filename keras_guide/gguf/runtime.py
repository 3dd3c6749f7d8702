"""A GGUF file run by llama.cpp itself (`llama-cpp-python`, optional): its
logits, speed and memory on this machine, each run in a process of its own."""

import json
import os
import signal
import subprocess
import sys

_RUN = r"""
import json, sys, time
import llama_cpp
path, threads, prompt_n, gen_n = sys.argv[1], *map(int, sys.argv[2:5])
llm = llama_cpp.Llama(model_path=path, n_ctx=prompt_n + gen_n + 8,
                      n_threads=threads, n_threads_batch=threads, verbose=False)
# Within the model's own context length (llama.cpp refuses longer batches).
arch = llm.metadata.get("general.architecture", "")
trained = int(llm.metadata.get(arch + ".context_length", prompt_n + gen_n))
if prompt_n + gen_n > trained:
    prompt_n, gen_n = max(1, trained // 2), max(1, trained // 2 - 1)
offset = min(100, llm.n_vocab() // 4)  # past the special tokens
span = min(1000, llm.n_vocab() - offset)
prompt = [offset + (7 * i + 11) % span for i in range(prompt_n)]
best_prompt, best_gen = float("inf"), float("inf")
for _ in range(3):
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    best_prompt = min(best_prompt, time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(gen_n):
        llm.eval([llm.sample(temp=0.0)])
    best_gen = min(best_gen, time.perf_counter() - start)
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak
# across exec).
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM"))
print(json.dumps({"prompt_tokens_per_s": prompt_n / best_prompt,
                  "generate_tokens_per_s": gen_n / best_gen,
                  "peak_rss_mib": peak / 1024}))
"""


def available():
    """Whether `llama_cpp` can be imported here."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _run_child(path, script, argv=(), stdin=None):
    """Runs `script` (llama.cpp on `path`) in a fresh Python process.

    Raises:
        ImportError: `llama-cpp-python` is not installed.
        RuntimeError: the process failed: its last line of error output, or
            the signal that killed it (a crash prints nothing useful).
    """
    if not available():
        raise ImportError("Running a GGUF file needs llama.cpp: pip install "
                          "llama-cpp-python")
    done = subprocess.run([sys.executable, "-c", script, *argv], input=stdin,
                          capture_output=True, text=True)
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise RuntimeError(
            f"llama.cpp crashed on {path} ({name}). A llama-cpp-python built for "
            "this CPU's newest instructions can crash on some machines; the README "
            "builds it for AVX2 (CMAKE_ARGS).")
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or [
            f"exit code {done.returncode}"]
        raise RuntimeError(f"llama.cpp could not run {path}: {tail[0]}")
    return done


def speed(path, threads=2, prompt_tokens=128, generate_tokens=64):
    """llama.cpp's speed on a `.gguf` file: best of three runs of a prompt,
    then greedy generation, in a fresh process.

    Returns:
        dict: `prompt_tokens_per_s`, `generate_tokens_per_s`, `peak_rss_mib`
        (that process's peak resident memory, Linux only), `file_mib`.

    Raises:
        ImportError: `llama-cpp-python` is not installed.
        RuntimeError: llama.cpp failed on the file (its message included).
    """
    done = _run_child(path, _RUN, [os.fspath(path), str(threads),
                                   str(prompt_tokens), str(generate_tokens)])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["file_mib"] = os.path.getsize(path) / 2**20
    return result


_LOGITS = r"""
import json, sys
import numpy as np
import llama_cpp
request = json.load(sys.stdin)
sequences = request["sequences"]
cache = {"type_k": 0, "type_v": 0} if request["kv_float32"] else {}
llm = llama_cpp.Llama(model_path=request["path"],
                      n_ctx=max(len(s) for s in sequences) + 8,
                      logits_all=True, verbose=False, **cache)
out = {}
for index, sequence in enumerate(sequences):
    llm.reset()
    llm.eval([int(i) for i in sequence])
    out[str(index)] = np.array(llm.scores[: len(sequence)], dtype=np.float32)
np.savez(request["out"], **out)
"""


def logits(path, sequences, kv_float32=False):
    """llama.cpp's logits for each token sequence, as llama.cpp runs the file.

    llama.cpp runs in a process of its own: beside PyTorch in one process
    the two OpenMP runtimes can crash it.

    Args:
        path: a `.gguf` file.
        sequences: lists of token ids, each evaluated from an empty cache.
        kv_float32: keep the key/value cache in float32 (llama.cpp's default
            is float16).

    Returns:
        A list of float32 arrays, `(len(sequence), vocabulary)`.

    Raises:
        ImportError: `llama-cpp-python` is not installed.
        RuntimeError: llama.cpp failed on the file (its message included).
    """
    import tempfile

    import numpy as np

    sequences = [[int(i) for i in sequence] for sequence in sequences]
    with tempfile.TemporaryDirectory(prefix="keras-guide-llama-") as folder:
        out = os.path.join(folder, "logits.npz")
        request = {"path": os.fspath(path), "sequences": sequences,
                   "kv_float32": bool(kv_float32), "out": out}
        _run_child(path, _LOGITS, stdin=json.dumps(request))
        with np.load(out) as saved:
            return [saved[str(i)] for i in range(len(sequences))]
