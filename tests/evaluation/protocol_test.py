"""llama-perplexity's protocol as host math, against plain float64 loops
written from the tool's source (`tools/perplexity/perplexity.cpp`)."""

import math

import numpy as np
import pytest

from keras_guide.evaluation import protocol


def test_chunks_drop_the_tail_and_open_with_the_start_token():
    ids = np.arange(10, 10 + 2 * 8 + 5)
    inputs, targets = protocol.chunks(ids, 8, bos_id=1)
    assert inputs.shape == targets.shape == (2, 8)
    np.testing.assert_array_equal(targets.reshape(-1), ids[:16])
    np.testing.assert_array_equal(inputs[:, 0], [1, 1])
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, 1:])
    inputs, _ = protocol.chunks(ids, 8)
    np.testing.assert_array_equal(inputs.reshape(-1), ids[:16])
    assert len(protocol.chunks(np.arange(100), 8, max_chunks=3)[0]) == 3
    assert protocol.first_scored(512) == 256


@pytest.mark.parametrize("length, context", [(15, 8), (3, 4)])
def test_a_text_shorter_than_two_chunks_is_refused(length, context):
    with pytest.raises(
        ValueError,
        match=f"has {length} tokens.*at least two chunks, {2 * context} tokens",
    ):
        protocol.chunks(np.arange(length), context)


def test_a_context_below_four_is_refused():
    with pytest.raises(ValueError, match="context.*Received: context=2"):
        protocol.chunks(np.arange(100), 2)


def _reference(logits, targets, base=None):
    """The tool's loops, one token at a time."""
    out = {"nll": [], "kl": [], "same": [], "dp": [], "nll_base": []}
    for z, t, zb in zip(
        logits, targets, base if base is not None else [None] * len(targets)
    ):
        z = np.asarray(z, np.float64)
        log_q = z - z.max() - math.log(np.exp(z - z.max()).sum())
        out["nll"].append(-log_q[t])
        if zb is None:
            continue
        zb = np.asarray(zb, np.float64)
        log_p = zb - zb.max() - math.log(np.exp(zb - zb.max()).sum())
        out["nll_base"].append(-log_p[t])
        out["kl"].append(sum(math.exp(a) * (a - b) for a, b in zip(log_p, log_q)))
        out["same"].append(int(np.argmax(z) == np.argmax(zb)))
        out["dp"].append(math.exp(log_q[t]) - math.exp(log_p[t]))
    return out


def test_perplexity_and_its_error_are_the_tools():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(150, 37)).astype(np.float32) * 3
    targets = rng.integers(0, 37, 150)
    scores = protocol.TokenScores()
    scores.add(logits[:70], targets[:70])  # two chunks, rows in blocks of 64
    scores.add(logits[70:], targets[70:])
    nll = np.array(_reference(logits, targets)["nll"])
    summary = protocol.perplexity_summary(scores.values("nll"))
    n = len(nll)
    mean = nll.mean()
    error = math.sqrt((np.mean(nll**2) - mean**2) / (n - 1))
    assert summary["tokens"] == n
    assert summary["nll"] == pytest.approx(mean, rel=1e-12)
    assert summary["perplexity"] == pytest.approx(math.exp(mean), rel=1e-12)
    assert summary["perplexity_error"] == pytest.approx(
        math.exp(mean) * error, rel=1e-9
    )


def test_kl_divergence_figures_are_the_tools():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(120, 29)) * 2
    logits = base + rng.normal(size=base.shape) * 0.7
    targets = rng.integers(0, 29, 120)
    scores = protocol.TokenScores()
    scores.add(logits, targets, base)
    ref = _reference(logits, targets, base)
    k = protocol.kl_summary(scores)
    kl = np.array(ref["kl"])
    assert k["kl"] == pytest.approx(kl.mean(), rel=1e-10)
    assert k["kl_max"] == pytest.approx(kl.max(), rel=1e-10)
    # The tool's percentile: linear between the sorted values around
    # fraction · (N − 1).
    ordered = np.sort(kl)
    for q in (99.0, 50.0, 5.0):
        p = q / 100 * (len(kl) - 1)
        i = int(p)
        expected = (1 - (p - i)) * ordered[i] + (p - i) * ordered[
            min(i + 1, len(kl) - 1)
        ]
        assert k["kl_percentiles"][f"{q:.1f}"] == pytest.approx(expected, rel=1e-9)
    nll, nll_base = np.array(ref["nll"]), np.array(ref["nll_base"])
    assert k["ln_ppl_ratio"] == pytest.approx(nll.mean() - nll_base.mean(), rel=1e-10)
    n = len(nll)
    e = math.sqrt((np.mean(nll**2) - nll.mean() ** 2) / (n - 1))
    eb = math.sqrt((np.mean(nll_base**2) - nll_base.mean() ** 2) / (n - 1))
    cov = (np.mean(nll * nll_base) - nll.mean() * nll_base.mean()) / (n - 1)
    assert k["ln_ppl_ratio_error"] == pytest.approx(
        math.sqrt(e**2 + eb**2 - 2 * cov), rel=1e-9
    )
    assert k["same_top"] == pytest.approx(np.mean(ref["same"]))
    assert k["delta_p_rms"] == pytest.approx(
        math.sqrt(np.mean(np.square(ref["dp"]))), rel=1e-10
    )
    assert 0 < k["kl"] and 0 < k["same_top"] < 1


def test_a_model_against_itself_is_at_zero():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(20, 11))
    scores = protocol.TokenScores()
    scores.add(logits, rng.integers(0, 11, 20), logits)
    k = protocol.kl_summary(scores)
    assert k["kl"] == pytest.approx(0.0, abs=1e-12)
    assert k["same_top"] == 1.0
    assert k["ln_ppl_ratio"] == pytest.approx(0.0, abs=1e-12)
    assert k["delta_p_rms"] == pytest.approx(0.0, abs=1e-12)


def test_mismatched_shapes_are_refused():
    scores = protocol.TokenScores()
    with pytest.raises(ValueError, match=r"one row per target.*\(4, 5\), 3 targets"):
        scores.add(np.zeros((4, 5)), [0, 1, 2])
    with pytest.raises(ValueError, match=r"base model's logits.*\(4, 6\) and \(4, 5\)"):
        scores.add(np.zeros((4, 5)), [0, 1, 2, 3], np.zeros((4, 6)))
    with pytest.raises(ValueError, match="No token was scored against a base"):
        protocol.kl_summary(protocol.TokenScores())
