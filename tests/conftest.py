"""Fixtures shared by the test modules; the tiny models, files and NumPy
references behind them are in `tests/harness/`."""

import pytest

from tests.harness import models


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
