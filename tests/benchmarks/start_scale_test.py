import numpy as np
import pytest

from tests.benchmarks import load
from tests.harness import families as harness


def _start_scale():
    return load("start_scale")


@pytest.mark.parametrize("name", ["llama", "gemma3", "gpt2"])
def test_scale_output_multiplies_every_logit(name):
    # RMSNorm with a plain gain, Gemma's (1 + scale) and LayerNorm's gain and
    # shift: each logit of the tied head times c, nothing else.
    family = harness.FAMILIES[name]
    backbone = harness.make_teacher(family, final_gain_one=False)
    x = harness.inputs(family)
    before = harness.logits(backbone, x)
    _start_scale().scale_output(backbone, 0.37)
    np.testing.assert_allclose(
        harness.logits(backbone, x), 0.37 * before, rtol=2e-4, atol=1e-5
    )


class _Bigram:
    """Logits of the next token from the current one alone: `table[token]`."""

    def __init__(self, table):
        self.table = table

    def predict_on_batch(self, x):
        return self.table[np.asarray(x["token_ids"])]


def test_fit_scale_finds_the_temperature_the_text_was_drawn_at():
    # Text drawn from softmax(0.5 · logits) of a bigram model: the scale with
    # the least cross-entropy is 0.5, up to the grid and the sample.
    rng = np.random.default_rng(0)
    vocabulary, length = 32, 129
    table = 4.0 * rng.normal(size=(vocabulary, vocabulary))
    p = np.exp(0.5 * table - (0.5 * table).max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    windows = np.zeros((16, length), "int32")
    windows[:, 0] = rng.integers(0, vocabulary, 16)
    for t in range(1, length):
        for row in range(16):
            windows[row, t] = rng.choice(vocabulary, p=p[windows[row, t - 1]])
    c, before, after = _start_scale().fit_scale(
        _Bigram(table), windows, np.ones_like(windows)
    )
    assert 0.45 < c < 0.55
    assert after < before - 0.3
