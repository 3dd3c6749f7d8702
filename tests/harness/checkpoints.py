"""The real pretrained checkpoints for tests: skipped where not installed
locally, required in CI (which installs them)."""

import os

import pytest

from keras_guide import checkpoints
from keras_guide.evaluation import logits  # noqa: F401 (re-exported)
from keras_guide.evaluation import perplexity  # noqa: F401
from keras_guide.evaluation import token_ids  # noqa: F401

PARAGRAPH = checkpoints.PARAGRAPH


def path(name):
    """The checkpoint's file; a skip where it is not installed, outside CI."""
    try:
        return checkpoints.path(name)
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{error} (installed by the README's set-up and CI)")
