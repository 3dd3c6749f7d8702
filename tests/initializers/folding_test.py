import numpy as np
import pytest

from keras_guide.initializers import folding
from keras_guide.initializers import guided_value
from keras_guide.initializers import projection

RNG = np.random.default_rng(0)


def _orthonormal(d_t, d_s, seed=0):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d_t, d_s)))[0]


def test_project_axis_is_m_transpose_w_and_w_m():
    m = _orthonormal(6, 4)
    w_read = RNG.normal(size=(6, 5))
    w_write = RNG.normal(size=(5, 6))
    np.testing.assert_allclose(folding.project_axis(w_read, m, 0), m.T @ w_read)
    np.testing.assert_allclose(folding.project_axis(w_write, m, 1), w_write @ m)


def test_project_axis_any_rank_and_axis():
    m = _orthonormal(6, 4)
    kernel = RNG.normal(size=(3, 6, 2, 5))  # e.g. (heads, d, ., .)
    out = folding.project_axis(kernel, m, 1)
    ref = np.einsum("hdab,de->heab", kernel, m)
    assert out.shape == (3, 4, 2, 5)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    np.testing.assert_allclose(folding.project_axis(kernel, m, -3), ref, atol=1e-12)


def test_fold_gain_and_shift():
    w = RNG.normal(size=(6, 2, 3))
    gamma, beta, bias = RNG.normal(size=6), RNG.normal(size=6), RNG.normal(size=(2, 3))
    np.testing.assert_allclose(
        folding.fold_gain(w, gamma, 0), np.einsum("d,dhk->dhk", gamma, w)
    )
    np.testing.assert_allclose(
        folding.fold_shift(w, beta, 0, bias), bias + np.einsum("d,dhk->hk", beta, w)
    )


def test_diagonal_gain_is_diag_of_mt_gamma_m():
    m = _orthonormal(6, 4)
    gamma = RNG.normal(size=6)
    np.testing.assert_allclose(
        folding.diagonal_gain(gamma, m), np.diag(m.T @ np.diag(gamma) @ m)
    )


def test_errors_name_weight_axis_and_shapes():
    with pytest.raises(
        ValueError, match=r"`q_kernel` of shape \(5, 3\).*5 entries on axis 0.*\(6, 4\)"
    ):
        folding.project_axis(np.ones((5, 3)), np.ones((6, 4)), 0, name="q_kernel")
    with pytest.raises(ValueError, match=r"Axis 2 is out of range.*rank 2"):
        folding.project_axis(np.ones((5, 3)), np.ones((5, 4)), 2)
    with pytest.raises(ValueError, match=r"gain of shape \(4,\).*axis 0"):
        folding.fold_gain(np.ones((5, 3)), np.ones(4), 0)


# A one-block NumPy reference transformer (pre-RMSNorm, multi-head attention,
# gated MLP), independent of keras_guide, in float64.
def _rms(x, gamma, eps=0.0):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * gamma


def _attention(x, w):
    h = _rms(x, w["attn_gamma"])
    q = np.einsum("td,dnk->tnk", h, w["q"])
    k = np.einsum("td,dnk->tnk", h, w["k"])
    v = np.einsum("td,dnk->tnk", h, w["v"])
    scores = np.einsum("snk,tnk->nst", q, k) / np.sqrt(q.shape[-1])
    scores = scores + np.triu(np.full(scores.shape[-2:], -1e9), 1)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("snk,nkd->sd", np.einsum("nst,tnk->snk", probs, v), w["o"])


def _mlp(x, w):
    h = _rms(x, w["mlp_gamma"])
    gate = h @ w["gate"]
    return (gate / (1 + np.exp(-gate)) * (h @ w["up"])) @ w["down"]


def _block(x, w):
    x = x + _attention(x, w)
    return x + _mlp(x, w)


def _teacher(d=16, heads=4, head_dim=3, f=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "attn_gamma": 1 + 0.3 * rng.normal(size=d),
        "q": rng.normal(size=(d, heads, head_dim)) / 4,
        "k": rng.normal(size=(d, heads, head_dim)) / 4,
        "v": rng.normal(size=(d, heads, head_dim)) / 4,
        "o": rng.normal(size=(heads, head_dim, d)) / 4,
        "mlp_gamma": 1 + 0.3 * rng.normal(size=d),
        "gate": rng.normal(size=(d, f)) / 4,
        "up": rng.normal(size=(d, f)) / 4,
        "down": rng.normal(size=(f, d)) / 4,
    }


def _student(teacher, m, heads, neurons):
    d_t, d_s = m.shape
    s = folding.norm_scale(d_t, d_s)
    h = teacher["q"].shape[1]
    f = teacher["gate"].shape[1]
    sel_h = {1: heads} if len(heads) < h else {}
    sel_f = {1: neurons} if len(neurons) < f else {}
    out = {"attn_gamma": np.ones(d_s), "mlp_gamma": np.ones(d_s)}
    for name in "qkv":
        w = teacher[name]
        out[name] = guided_value(
            w,
            (d_s, len(heads), w.shape[2]),
            {0: m},
            sel_h,
            {0: teacher["attn_gamma"]},
            s,
        )
    out["o"] = guided_value(
        teacher["o"],
        (len(heads), teacher["o"].shape[1], d_s),
        {2: m},
        {0: heads} if sel_h else {},
    )
    for name in ("gate", "up"):
        out[name] = guided_value(
            teacher[name],
            (d_s, len(neurons)),
            {0: m},
            sel_f,
            {0: teacher["mlp_gamma"]},
            s,
        )
    out["down"] = guided_value(
        teacher["down"], (len(neurons), d_s), {1: m}, {0: neurons} if sel_f else {}
    )
    return out


def test_full_width_student_reproduces_teacher_block_in_rotated_basis():
    teacher = _teacher()
    x_t = np.random.default_rng(1).normal(size=(7, 16))
    m = projection.pca_projection(
        x_t @ np.random.default_rng(2).normal(size=(16, 16)), 16
    ).matrix
    student = _student(teacher, m, np.arange(4), np.arange(20))
    np.testing.assert_allclose(
        _block(x_t @ m, student), _block(x_t, teacher) @ m, atol=1e-10
    )


def test_narrow_student_reproduces_kept_heads_and_neurons_exactly():
    teacher = _teacher()
    m = _orthonormal(16, 10)
    heads, neurons = np.array([0, 2]), np.array([0, 3, 5, 9, 12])
    student = _student(teacher, m, heads, neurons)
    # The teacher restricted to the kept heads and neurons, on the reconstructed input.
    restricted = dict(teacher)
    for name in "qkv":
        restricted[name] = teacher[name][:, heads]
    restricted["o"] = teacher["o"][heads]
    restricted["gate"], restricted["up"] = (
        teacher["gate"][:, neurons],
        teacher["up"][:, neurons],
    )
    restricted["down"] = teacher["down"][neurons]
    x_s = np.random.default_rng(3).normal(size=(7, 10))
    x_hat = x_s @ m.T
    # Each residual branch equals the teacher's on the reconstructed input, projected.
    for branch in (_attention, _mlp):
        np.testing.assert_allclose(
            branch(x_s, student), branch(x_hat, restricted) @ m, atol=1e-10
        )


def test_rms_norm_fold_is_exact():
    d_t, d_s = 16, 6
    m = _orthonormal(d_t, d_s)
    gamma = 1 + RNG.normal(size=d_t)
    w = RNG.normal(size=(d_t, 5))
    w_s = guided_value(
        w, (d_s, 5), {0: m}, gains={0: gamma}, scale=folding.norm_scale(d_t, d_s)
    )
    x_s = RNG.normal(size=(9, d_s))
    np.testing.assert_allclose(
        _rms(x_s, np.ones(d_s)) @ w_s, _rms(x_s @ m.T, gamma) @ w, atol=1e-12
    )


def test_layer_norm_fold_is_exact_with_mean_preserving_projection():
    d_t, d_s = 16, 6
    table = np.random.default_rng(4).normal(size=(50, d_t)) + 0.5
    m = projection.pca_projection(table, d_s, mean_preserving=True).matrix
    gamma, beta = 1 + RNG.normal(size=d_t), RNG.normal(size=d_t)
    w, b = RNG.normal(size=(d_t, 5)), RNG.normal(size=5)
    w_s = guided_value(
        w, (d_s, 5), {0: m}, gains={0: gamma}, scale=folding.norm_scale(d_t, d_s)
    )
    b_s = folding.fold_shift(w, beta, 0, b)

    def ln(x, g, bb):
        x = x - x.mean(-1, keepdims=True)
        return x / np.sqrt((x**2).mean(-1, keepdims=True)) * g + bb

    x_s = RNG.normal(size=(9, d_s))
    np.testing.assert_allclose(
        ln(x_s, 1.0, 0.0) @ w_s + b_s, ln(x_s @ m.T, gamma, beta) @ w + b, atol=1e-12
    )


def test_guided_value_errors():
    m = _orthonormal(6, 4)
    with pytest.raises(ValueError, match=r"`w` has rank 2 \(shape \(6, 3\)\).*rank 3"):
        guided_value(np.ones((6, 3)), (4, 3, 1), {0: m}, name="w")
    with pytest.raises(
        ValueError, match=r"larger than the teacher's on axis 1.*\(4, 5\).*\(6, 3\)"
    ):
        guided_value(np.ones((6, 3)), (4, 5), {0: m}, name="w")
    with pytest.raises(ValueError, match=r"Axis 1 of `w` differs.*no rule"):
        guided_value(np.ones((6, 3)), (4, 2), {0: m}, name="w")
    with pytest.raises(ValueError, match=r"`w` of shape \(6, 3\) holds 1 NaN"):
        bad = np.ones((6, 3))
        bad[0, 0] = np.inf
        guided_value(bad, (4, 3), {0: m}, name="w")
    with pytest.raises(
        ValueError, match=r"projection for axis 0.*\(6, 4\), expected \(6, 5\)"
    ):
        guided_value(np.ones((6, 3)), (5, 3), {0: m}, name="w")
