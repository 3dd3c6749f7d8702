"""A teacher off the training device: its top-k targets stored on disk.

`keras-guide distill/compress --top-k K --targets-from llama.cpp` scores
every training window once, before training, with the `.gguf` teacher in
llama.cpp itself (one `gguf.runtime.Session`, a child process), keeps each
token's `K` largest logits, their ids and its log-normalizer
`logsumexp(z/τ)` (float64 on the host, from llama.cpp's full float32
logits), and writes them into the run folder as it goes (`--targets-from
keras`: the same from the Keras teacher, `offline.teacher_top_k`).
Training then reads each batch's rows from those files (memory-mapped), so
memory does not grow with the windows, and llama.cpp's process is closed
before the first step.

Layout of `out_dir/teacher_targets/`: `logits.npy` (float32 `(M, T, K)`),
`indices.npy` (int32 `(M, T, K)`), `log_normalizer.npy` (float32 `(M, T)`),
one row per window in the order the run first uses it, and `targets.json`:
what the rows were computed for (a digest of the teacher, the windows, the
order, `K` and `τ`) and how many are stored. The manifest is rewritten
atomically after each chunk of windows, once their rows are flushed to disk,
so a killed run keeps every chunk the manifest counts and a `--resume`
reuses them (never recomputing a stored window); a manifest of another run is
refused.
"""

import json
import os
import shutil
import time

import numpy as np

from keras_guide import _files
from keras_guide.distillation import offline
from keras_guide.workflows import checkpoint
from keras_guide.workflows import text
from keras_guide.workflows.run import record

FOLDER = "teacher_targets"
MANIFEST = "targets.json"
SOURCES = ("keras", "llama.cpp")
_ARRAYS = (
    ("logits", offline.TOP_K_LOGITS, np.float32, True),
    ("indices", offline.TOP_K_INDICES, np.int32, True),
    ("log_normalizer", offline.LOG_NORMALIZER, np.float32, False),
)
# Windows scored between two manifest writes.
CHUNK = 32


def check_source(targets_from, teacher_path, top_k):
    """Refuses a `targets_from` that cannot run, before anything is loaded.

    Args:
        targets_from: `"keras"`, `"llama.cpp"` or None (the Keras
            teacher's targets in memory, `distill.StoredTeacherBatches`).
        teacher_path: the teacher's file (or None when it is not known).
        top_k: the `--top-k` given, or None.

    Raises:
        ValueError: an unknown source, a source without `top_k`, `llama.cpp`
            for a teacher that is not a `.gguf` file, or where `llama-cpp-python`
            is not installed.
    """
    if targets_from is None:
        return
    if targets_from not in SOURCES:
        raise ValueError(
            f"`targets_from` must be one of {', '.join(SOURCES)}. "
            f"Received: targets_from={targets_from!r}"
        )
    if not top_k:
        raise ValueError(
            f"--targets-from {targets_from} stores the teacher's top-k "
            "logits: pass --top-k K too. Received: no --top-k"
        )
    if targets_from == "keras":
        return
    if teacher_path is None or not str(teacher_path).endswith(".gguf"):
        raise ValueError(
            "--targets-from llama.cpp runs the teacher's .gguf file in "
            "llama.cpp: pass a .gguf teacher, or --targets-from keras. "
            f"Received: teacher {teacher_path}"
        )
    from keras_guide.gguf import runtime

    if not runtime.available():
        raise ValueError(
            "--targets-from llama.cpp needs llama.cpp: pip install "
            "llama-cpp-python, or pass --targets-from keras. Received: "
            "llama_cpp is not importable"
        )


def use_order(batches, num_steps):
    """The windows a run of `num_steps` uses, each once, in the order its
    batches first hold them (an int64 array)."""
    seen, order = set(), []
    for step in range(int(num_steps)):
        for row in batches.rows(step):
            if int(row) not in seen:
                seen.add(int(row))
                order.append(int(row))
        if len(order) == len(batches.tokens):
            break
    return np.asarray(order, np.int64)


def top_k_rows(logits, k, temperature):
    """One window's targets from its full logits, on the host.

    Args:
        logits: float32 `(T, V)`.
        k: logits kept per token.
        temperature: `τ` of the log-normalizer.

    Returns:
        `(values float32 (T, k), ids int32 (T, k), log_z float32 (T,))`, the
        values sorted from the largest (ties: the lower id first, as
        `keras.ops.top_k`), `log_z = logsumexp(logits / τ)` in float64.
    """
    logits = np.asarray(logits, np.float32)
    part = np.argpartition(logits, logits.shape[-1] - k, axis=-1)[:, -k:]
    values = np.take_along_axis(logits, part, axis=-1)
    order = np.lexsort((part, -values), axis=-1)
    ids = np.take_along_axis(part, order, axis=-1)
    log_z = np.empty(len(logits), np.float64)
    # A few rows at a time: their float64 copy stays in the cache (6x faster
    # than the whole window's at a 49k vocabulary).
    for start in range(0, len(logits), 8):
        scaled = logits[start : start + 8].astype(np.float64) / float(temperature)
        peak = scaled.max(axis=-1, keepdims=True)
        log_z[start : start + 8] = (
            np.log(np.exp(scaled - peak).sum(axis=-1)) + peak[:, 0]
        )
    return (
        np.take_along_axis(values, order, axis=-1),
        ids.astype(np.int32),
        log_z.astype(np.float32),
    )


class LlamaCppScorer:
    """Scores windows with a `.gguf` teacher in llama.cpp (one child process).

    Each window is its own sequence from position 0, only its real tokens
    (the padded positions repeat the last real token's targets, which carry
    no weight), with a float32 key/value cache and unfused attention (whose
    float16 queries move the logits by ~1e-3 of their size), as the Keras
    teacher computes it.

    Args:
        path: the `.gguf` teacher.
        context: the window's input length.
        threads: CPU threads for llama.cpp, default every core.
    """

    def __init__(self, path, context, threads=None):
        from keras_guide.gguf import runtime

        self.path, self.context, self.threads = path, int(context), threads
        self._runtime, self._session = runtime, None
        self.calls = 0

    def __call__(self, tokens, mask, k, temperature):
        if self._session is None:
            self._session = self._runtime.Session(
                self.path,
                self.context,
                threads=self.threads,
                kv_float32=True,
                flash_attention=False,
            )
            if k > self._session.vocabulary_size:
                raise ValueError(
                    f"`top_k` ({k}) is more than the teacher's vocabulary "
                    f"({self._session.vocabulary_size}): pass at most that."
                )
        width = tokens.shape[1] - 1
        out = (
            np.zeros((len(tokens), width, k), np.float32),
            np.zeros((len(tokens), width, k), np.int32),
            np.zeros((len(tokens), width), np.float32),
        )
        for i, (row, real) in enumerate(zip(tokens, mask)):
            length = max(1, int(real[:-1].sum()))
            self.calls += 1
            scored = top_k_rows(self._session.logits(row[:length]), k, temperature)
            for target, value in zip(out, scored):
                target[i, :length] = value
                target[i, length:] = value[length - 1]
        return out

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None


class KerasScorer:
    """Scores windows with the Keras teacher (`offline.teacher_top_k`)."""

    def __init__(self, teacher, batch_size=16):
        self.teacher, self.batch_size, self.calls = teacher, int(batch_size), 0

    def __call__(self, tokens, mask, k, temperature):
        inputs, _, _ = text.window_batch(tokens, mask)
        self.calls += 1
        stored = offline.teacher_top_k(
            self.teacher, inputs, k, batch_size=self.batch_size, temperature=temperature
        )
        return tuple(stored[key] for _, key, _, _ in _ARRAYS)

    def close(self):
        pass


def _digest(source, teacher_digest, data_digest, order, k, temperature, shape):
    return {
        "source": source,
        "teacher": teacher_digest,
        "data": data_digest,
        "order": record.array_digest(order),
        "top_k": int(k),
        "temperature": float(temperature),
        "windows": int(shape[0]),
        "tokens_per_window": int(shape[1]),
    }


class DiskTargets:
    """Training batches whose teacher targets are read from files on disk.

    Construct it (every refusal happens here, before anything is written or
    removed), call `fill()` to score the windows not yet stored, then
    `batch(step)` as `text.Batches.batch`, with the targets beside the
    labels.

    Args:
        batches: a `text.Batches`.
        scorer: a `LlamaCppScorer` or `KerasScorer`.
        folder: where the files go (`out_dir/teacher_targets`).
        top_k: logits kept per token.
        temperature: the Distiller's temperature.
        num_steps: the steps the run trains (bounds the windows stored).
        source: `"llama.cpp"` or `"keras"` (recorded in the digest).
        teacher_digest, data_digest: the run's teacher and windows
            (`record.model_digest`, `record.array_digest`).
        reuse: keep the rows a previous run stored in `folder` (a resume);
            otherwise any files there are replaced.

    Raises:
        ValueError: `reuse` of a folder stored for another run (each
            difference named), or not enough free disk for the files.
    """

    def __init__(
        self,
        batches,
        scorer,
        folder,
        top_k,
        temperature,
        num_steps,
        source,
        teacher_digest,
        data_digest,
        reuse=False,
    ):
        self.batches, self.scorer, self.folder = batches, scorer, folder
        self.top_k, self.temperature = int(top_k), float(temperature)
        self.order = use_order(batches, num_steps)
        self.position = np.full(len(batches.tokens), -1, np.int64)
        self.position[self.order] = np.arange(len(self.order))
        shape = (len(self.order), batches.tokens.shape[1] - 1)
        self.shape = shape
        self.digest = _digest(
            source, teacher_digest, data_digest, self.order, top_k, temperature, shape
        )
        self.seconds, self.stored, self._arrays = 0.0, 0, None
        manifest = os.path.join(folder, MANIFEST)
        if reuse and os.path.exists(manifest):
            with open(manifest) as f:
                previous = json.load(f)
            differences = [
                f"{key} {previous['digest'].get(key)!r} → {value!r}"
                for key, value in self.digest.items()
                if previous["digest"].get(key) != value
            ]
            if differences:
                raise ValueError(
                    f"The teacher targets stored in {folder} were computed for "
                    f"another run ({'; '.join(differences)}): resume with the same "
                    "teacher, text and options, or pass --overwrite to compute them "
                    f"again. Received: {len(differences)} differences"
                )
            self.stored = int(previous["stored"])
            self.seconds = float(previous.get("seconds", 0.0))
        needed = shape[0] * shape[1] * (8 * self.top_k + 4)
        parent = (
            folder
            if os.path.isdir(folder)
            else os.path.dirname(os.path.abspath(folder))
        )
        free = shutil.disk_usage(parent).free
        if not self.stored and needed > free:
            raise ValueError(
                f"Storing the teacher's top {self.top_k} logits for the {shape[0]} "
                f"windows this run uses takes {needed / 2**30:.2f} GiB, more than "
                f"the {free / 2**30:.2f} GiB free under {parent}: pass a smaller "
                "--top-k, fewer steps, or distil from the live teacher."
            )

    def _path(self, name):
        return os.path.join(self.folder, name + ".npy")

    def _open(self):
        """Opens the arrays (created empty, atomically, when not reused)."""
        if not self.stored:
            shutil.rmtree(self.folder, ignore_errors=True)
            os.makedirs(self.folder)
            for name, _, dtype, per_logit in _ARRAYS:
                shape = (*self.shape, self.top_k) if per_logit else self.shape

                def create(tmp, dtype=dtype, shape=shape):
                    np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=dtype, shape=shape
                    ).flush()

                _files.write_atomic(self._path(name), create)
            self._write_manifest()
        else:
            checkpoint.remove_temporaries(self.folder)
        self._arrays = {
            key: np.load(self._path(name), mmap_mode="r+")
            for name, key, _, _ in _ARRAYS
        }

    def _write_manifest(self):
        checkpoint.write_json(
            os.path.join(self.folder, MANIFEST),
            {
                "digest": self.digest,
                "stored": int(self.stored),
                "seconds": self.seconds,
            },
        )

    def fill(self, verbose=False):
        """Scores and stores every window not yet stored, a chunk at a time.

        Returns:
            The windows scored by this call.
        """
        self._open()
        scored = 0
        try:
            while self.stored < len(self.order):
                started = time.perf_counter()
                rows = self.order[self.stored : self.stored + CHUNK]
                values = self.scorer(
                    self.batches.tokens[rows],
                    self.batches.mask[rows],
                    self.top_k,
                    self.temperature,
                )
                end = self.stored + len(rows)
                for (_, key, _, _), value in zip(_ARRAYS, values):
                    self._arrays[key][self.stored : end] = value
                    self._arrays[key].flush()
                self.stored, scored = end, scored + len(rows)
                self.seconds += time.perf_counter() - started
                self._write_manifest()
                if verbose:
                    print(
                        f"\rTeacher targets: {self.stored}/{len(self.order)} windows",
                        end="",
                        flush=True,
                    )
        finally:
            self.scorer.close()
        if verbose and scored:
            print()
        # Read-only from here: training only reads.
        self._arrays = {
            key: np.load(self._path(name), mmap_mode="r") for name, key, _, _ in _ARRAYS
        }
        return scored

    def batch(self, step):
        """Batch number `step` as `(x, {"labels", top-k…}, sample_weight)`."""
        if self._arrays is None or self.stored < len(self.order):
            raise RuntimeError("Call `fill()` before reading batches.")
        x, y, weight = self.batches.batch(step)
        positions = self.position[np.asarray(self.batches.rows(step))]
        # Sorted reads from the memory map, then back to the batch's order.
        ranks = np.argsort(positions)
        back = np.argsort(ranks)
        targets = {
            key: np.asarray(array[positions[ranks]])[back]
            for key, array in self._arrays.items()
        }
        targets[offline.TEMPERATURE] = np.full(
            len(positions), self.temperature, np.float32
        )
        return x, {"labels": y, **targets}, weight
