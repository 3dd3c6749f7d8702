"""Fixtures shared by the test modules; the tiny models, files and NumPy
references behind them are in `tests/harness/`."""

import atexit
import os
import shutil
import tempfile

import pytest


def _share_jax_compilations():
    """Lets the JAX runs reuse each other's compiled programs: many tests build
    the same tiny models and compile the same steps, in this process and in the
    CLI subprocesses it starts (which inherit the variables). XLA keys each
    entry by the program, its devices and the compiler, so a hit is the program
    that would have been compiled. The folder is this session's own and goes
    when the session ends; a cache the caller set is left alone."""
    if os.environ.get("KERAS_BACKEND") != "jax":
        return
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="keras_guide_tests_xla_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    # Keep every program, however quick to compile: the tests' models are tiny.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


# Before anything imports JAX, which reads these variables once.
_share_jax_compilations()

from tests.harness import models  # noqa: E402


@pytest.fixture
def llama_gguf(tmp_path):
    """The path of a tiny Llama-family `.gguf` teacher (Q8_0, tied, GPT-2
    style byte-level tokenizer): `tests.harness.gguf_files.write_llama`."""
    from tests.harness import gguf_files

    return gguf_files.write_llama(tmp_path / "teacher.gguf")


@pytest.fixture
def gemma3_gguf(tmp_path):
    """The path of a tiny Gemma 3 `.gguf` teacher:
    `tests.harness.gguf_files.write_gemma3`."""
    from tests.harness import gguf_files

    return gguf_files.write_gemma3(tmp_path / "teacher.gguf")


@pytest.fixture
def gpt2_pair():
    """A tiny KerasHub GPT-2 teacher (width 16) and a narrower student
    (width 8), causal LMs without preprocessors, seeded."""
    return models.gpt2(hidden=16, seed=0), models.gpt2(hidden=8, seed=1)
