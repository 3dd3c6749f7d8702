"""A GGUF file run by llama.cpp itself (`llama-cpp-python`, optional): its
logits, speed and memory on this machine, each run in a process of its own."""

import json
import os
import signal
import subprocess
import sys

import numpy as np

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
        raise ImportError(
            "Running a GGUF file needs llama.cpp: pip install llama-cpp-python"
        )
    done = subprocess.run(
        [sys.executable, "-c", script, *argv],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise RuntimeError(
            f"llama.cpp crashed on {path} ({name}). A llama-cpp-python built for "
            "this CPU's newest instructions can crash on some machines; the README "
            "builds it for AVX2 (CMAKE_ARGS)."
        )
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
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
    done = _run_child(
        path,
        _RUN,
        [os.fspath(path), str(threads), str(prompt_tokens), str(generate_tokens)],
    )
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
        request = {
            "path": os.fspath(path),
            "sequences": sequences,
            "kv_float32": bool(kv_float32),
            "out": out,
        }
        _run_child(path, _LOGITS, stdin=json.dumps(request))
        with np.load(out) as saved:
            return [saved[str(i)] for i in range(len(sequences))]


# A llama.cpp model kept loaded in a child process, answering one request per
# line on stdin with one line on stdout: llama-perplexity's own calls (the
# low-level API: a batch whose positions before `first` return no logits).
_SESSION = r"""
import ctypes, json, sys
import numpy as np
import llama_cpp as L

def reply(**kwargs):
    sys.stdout.write(json.dumps(kwargs) + "\n")
    sys.stdout.flush()

start = json.loads(sys.stdin.readline())
L.llama_backend_init()
model = L.llama_model_load_from_file(start["path"].encode(),
                                     L.llama_model_default_params())
if not model:
    sys.exit("llama.cpp could not load the model")
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)
params = L.llama_context_default_params()
params.n_ctx = params.n_batch = start["context"]
params.n_ubatch = min(start["context"], 512)
params.n_threads = params.n_threads_batch = start["threads"]
if start["kv_float32"]:
    params.type_k = params.type_v = 0
if start.get("flash_attention") is not None:
    params.flash_attn_type = (L.LLAMA_FLASH_ATTN_TYPE_ENABLED
                              if start["flash_attention"] else
                              L.LLAMA_FLASH_ATTN_TYPE_DISABLED)
ctx = L.llama_init_from_model(model, params)
if not ctx:
    sys.exit("llama.cpp could not create a context of %d tokens" % start["context"])
batch = L.llama_batch_init(start["context"], 0, 1)
# The logits go through one file mapped by both processes.
out = np.lib.format.open_memmap(start["logits"], mode="w+", dtype=np.float32,
                                shape=(start["context"], n_vocab))
reply(vocabulary_size=n_vocab, add_bos=bool(L.llama_vocab_get_add_bos(vocab)),
      add_eos=bool(L.llama_vocab_get_add_eos(vocab)),
      bos_id=int(L.llama_vocab_bos(vocab)),
      context_length=int(L.llama_model_n_ctx_train(model)))
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "tokenize":
        data = open(request["text"], "rb").read()
        buffer = (L.llama_token * (len(data) + 8))()
        count = L.llama_tokenize(vocab, data, len(data), buffer, len(buffer),
                                 True, False)
        np.save(request["out"], np.ctypeslib.as_array(buffer)[:count].astype(np.int32))
        reply(tokens=count)
        continue
    tokens, first = request["tokens"], request["first"]
    L.llama_memory_clear(L.llama_get_memory(ctx), True)
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i], batch.pos[i] = token, i
        batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
        batch.logits[i] = i >= first
    if L.llama_decode(ctx, batch):
        sys.exit("llama_decode failed")
    rows = len(tokens) - first
    out[:rows] = np.ctypeslib.as_array(L.llama_get_logits(ctx),
                                       shape=(rows, n_vocab))
    reply(rows=rows)
"""


class Session:
    """A `.gguf` model loaded once by llama.cpp in a child process: its
    tokenizer and its logits on sequences of up to `context` tokens, each
    evaluated from an empty cache, as `llama-perplexity` evaluates a chunk.

    Use it as a context manager; the process ends with the block.

    Args:
        path: str. The `.gguf` file.
        context: int. The longest sequence (llama.cpp's `n_ctx`).
        threads: int or None. CPU threads; defaults to every core.
        kv_float32: bool. A float32 key/value cache instead of llama.cpp's
            default float16 (what `llama-perplexity` uses). Defaults to False.
        flash_attention: bool or None. llama.cpp's fused attention on or off
            (on the CPU it rounds the queries to float16: logits ~1e-3 of
            their size apart); None leaves llama.cpp's choice. Defaults to
            None.

    Attributes:
        vocabulary_size, add_bos, bos_id, context_length: the file's
            vocabulary size, whether its tokenizer adds the start token, that
            token, and the context the model was trained for.

    Raises:
        ImportError: `llama-cpp-python` is not installed.
        RuntimeError: llama.cpp failed (its message, or the signal).
    """

    def __init__(
        self, path, context, threads=None, kv_float32=False, flash_attention=None
    ):
        import tempfile

        if not available():
            raise ImportError(
                "Running a GGUF file needs llama.cpp: pip install llama-cpp-python"
            )
        self.path = os.fspath(path)
        self._folder = tempfile.TemporaryDirectory(prefix="keras-guide-llama-")
        self._errors = open(os.path.join(self._folder.name, "stderr"), "w+")
        self._process = self._logits = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _SESSION],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                text=True,
            )
            logits = os.path.join(self._folder.name, "logits.npy")
            info = self._ask(
                path=self.path,
                context=int(context),
                threads=int(threads or os.cpu_count() or 1),
                kv_float32=bool(kv_float32),
                logits=logits,
                flash_attention=flash_attention,
            )
            self._logits = np.load(logits, mmap_mode="r")
        except BaseException:
            # A model llama.cpp cannot load leaves no process or files behind.
            self.close()
            raise
        self.context = int(context)
        self.vocabulary_size = info["vocabulary_size"]
        self.add_bos, self.bos_id = info["add_bos"], info["bos_id"]
        self.context_length = info["context_length"]

    def _ask(self, **request):
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self._process.wait()
            code = self._process.returncode
            if code is not None and code < 0:
                raise RuntimeError(
                    f"llama.cpp crashed on {self.path} ({signal.Signals(-code).name})."
                )
            self._errors.seek(0)
            tail = self._errors.read().strip().splitlines()[-1:] or [
                f"exit code {code}"
            ]
            raise RuntimeError(f"llama.cpp could not run {self.path}: {tail[0]}")
        return json.loads(line)

    def tokenize(self, text):
        """`text` in llama.cpp's token ids, as `llama-perplexity` tokenizes its
        file: special tokens added (the start token where the vocabulary adds
        one), special-token text not parsed. Returns an int32 array."""
        source = os.path.join(self._folder.name, "text")
        with open(source, "w", encoding="utf-8") as f:
            f.write(text)
        out = os.path.join(self._folder.name, "tokens.npy")
        self._ask(op="tokenize", text=source, out=out)
        return np.load(out)

    def logits(self, tokens, first=0):
        """llama.cpp's float32 logits at positions `first ..` of `tokens`,
        evaluated from an empty cache: `(len(tokens) - first, vocabulary)`."""
        tokens = np.asarray(tokens, np.int32)
        if not 0 < len(tokens) <= self.context or not 0 <= first < len(tokens):
            raise ValueError(
                f"A sequence of 1 to {self.context} tokens, scored from a position "
                f"inside it. Received: {len(tokens)} tokens, first={first}"
            )
        rows = self._ask(op="logits", tokens=tokens.tolist(), first=int(first))["rows"]
        return np.array(self._logits[:rows])

    def close(self):
        """Ends the child process and removes its files."""
        self._logits = None
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait()
        self._errors.close()
        self._folder.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
