import numpy as np
import pytest

from keras_guide.initializers import projection


def _table(rows=300, width=12, seed=0):
    rng = np.random.default_rng(seed)
    # Anisotropic rows with a non-zero mean, like a trained embedding table.
    return rng.normal(size=(rows, width)) * np.linspace(3.0, 0.2, width) + 0.7


def _reference_pca(table, dim, center):
    """Independent reference: SVD of the (centred) table in float64."""
    table = np.asarray(table, np.float64)
    mean = table.mean(axis=0) if center else np.zeros(table.shape[1])
    _, singular, vt = np.linalg.svd(table - mean, full_matrices=True)
    eigenvalues = np.zeros(table.shape[1])
    eigenvalues[: singular.size] = singular**2
    return vt.T[:, :dim], eigenvalues


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("dim", [1, 5, 12])
def test_matches_svd_reference_up_to_sign(center, dim):
    table = _table()
    p = projection.pca_projection(table, dim, center=center, chunk_rows=37)
    ref, eigenvalues = _reference_pca(table, dim, center)
    np.testing.assert_allclose(np.abs(p.matrix.T @ ref), np.eye(dim), atol=1e-8)
    np.testing.assert_allclose(p.eigenvalues, eigenvalues, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        p.explained_variance, eigenvalues[:dim].sum() / eigenvalues.sum()
    )


@pytest.mark.parametrize("mean_preserving", [False, True])
def test_columns_are_orthonormal(mean_preserving):
    p = projection.pca_projection(_table(), 7, mean_preserving=mean_preserving)
    np.testing.assert_allclose(p.matrix.T @ p.matrix, np.eye(7), atol=1e-12)


@pytest.mark.parametrize("center", [False, True])
def test_reconstruction_error_equals_discarded_energy(center):
    table = _table()
    p = projection.pca_projection(table, 4, center=center)
    centred = table - p.mean
    residual = centred - centred @ p.matrix @ p.matrix.T
    np.testing.assert_allclose(np.sum(residual**2), p.eigenvalues[4:].sum(), rtol=1e-9)


def test_full_width_reproduces_table_up_to_rotation():
    table = _table()
    p = projection.pca_projection(table, table.shape[1])
    np.testing.assert_allclose(table @ p.matrix @ p.matrix.T, table, atol=1e-10)
    assert p.explained_variance == pytest.approx(1.0)


def test_signs_are_deterministic_and_largest_entry_positive():
    table = _table()
    first = projection.pca_projection(table, 6)
    second = projection.pca_projection(table.copy(), 6, chunk_rows=11)
    np.testing.assert_allclose(first.matrix, second.matrix, atol=1e-12)
    pivots = np.argmax(np.abs(first.matrix), axis=0)
    assert np.all(first.matrix[pivots, np.arange(6)] > 0)


def test_float32_table_gives_float64_matrix():
    p = projection.pca_projection(_table().astype("float32"), 3)
    assert p.matrix.dtype == np.float64


def test_row_weights_equal_repeated_rows():
    table = _table(rows=40)
    weights = np.arange(40) % 3
    weighted = projection.pca_projection(table, 5, center=True, weights=weights)
    repeated = projection.pca_projection(
        np.repeat(table, weights, axis=0), 5, center=True
    )
    np.testing.assert_allclose(weighted.matrix, repeated.matrix, atol=1e-9)
    np.testing.assert_allclose(weighted.mean, repeated.mean, atol=1e-12)


@pytest.mark.parametrize("d_t,d_s", [(12, 5), (12, 1), (12, 12), (9, 4)])
def test_mean_preserving_maps_ones_to_ones(d_t, d_s):
    table = _table(width=d_t)
    p = projection.pca_projection(table, d_s, mean_preserving=True)
    np.testing.assert_allclose(
        p.matrix @ np.ones(d_s), np.sqrt(d_s / d_t) * np.ones(d_t), atol=1e-12
    )
    np.testing.assert_allclose(p.matrix.T @ p.matrix, np.eye(d_s), atol=1e-12)


def _layer_norm(x):
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True))


def test_mean_preserving_commutes_with_layer_norm():
    d_t, d_s = 12, 6
    p = projection.pca_projection(_table(width=d_t), d_s, mean_preserving=True)
    x_s = np.random.default_rng(1).normal(size=(20, d_s))
    lhs = _layer_norm(x_s @ p.matrix.T)
    rhs = np.sqrt(d_t / d_s) * _layer_norm(x_s) @ p.matrix.T
    np.testing.assert_allclose(lhs, rhs, atol=1e-12)


def test_mean_preserving_directions_are_top_feature_centred_components():
    d_t, d_s = 12, 5
    table = _table(width=d_t)
    p = projection.pca_projection(table, d_s, mean_preserving=True)
    centring = np.eye(d_t) - np.ones((d_t, d_t)) / d_t
    ref, eigenvalues = _reference_pca(table @ centring, d_s - 1, center=False)
    # The student span is {1} plus the top d_s - 1 feature-centred directions.
    span = np.concatenate([np.ones((d_t, 1)) / np.sqrt(d_t), ref], axis=1)
    np.testing.assert_allclose(p.matrix @ p.matrix.T, span @ span.T, atol=1e-8)
    np.testing.assert_allclose(
        p.explained_variance, eigenvalues[: d_s - 1].sum() / eigenvalues.sum()
    )


def test_selection_projection_is_identity_columns():
    p = projection.selection_projection(8, 4)
    np.testing.assert_array_equal(np.eye(8)[:, [0, 2, 4, 6]], p.matrix)


def test_householder_is_orthogonal_and_maps_e1():
    u = np.ones(5) / np.sqrt(5)
    h = projection.householder(u)
    np.testing.assert_allclose(h @ h.T, np.eye(5), atol=1e-14)
    np.testing.assert_allclose(h[:, 0], u, atol=1e-14)


@pytest.mark.parametrize(
    "table,dim,match",
    [
        (np.zeros((4, 3, 2)), 2, r"2-D table.*\(4, 3, 2\)"),
        (np.zeros((10, 4)), 5, r"dim.*\[1, 4\].*\(10, 4\).*dim=5"),
        (np.zeros((10, 4)), 0, r"dim=0"),
        (np.full((10, 4), np.nan), 2, r"`table`.*\(10, 4\).*40 NaN or Inf"),
    ],
)
def test_bad_input_names_shapes(table, dim, match):
    with pytest.raises(ValueError, match=match):
        projection.pca_projection(table, dim)


def test_given_matrix_must_be_orthonormal():
    with pytest.raises(ValueError, match=r"orthonormal.*qr"):
        projection.as_projection(np.ones((4, 2)))
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 3)))[0]
    assert projection.as_projection(q).kind == "given"


def test_float32_chunk_products_match_float64_closely():
    table = _table(rows=5000, width=24).astype("float32")
    fast = projection.pca_projection(table, 6, precision="float32", chunk_rows=512)
    exact = projection.pca_projection(table, 6, precision="float64")
    np.testing.assert_allclose(fast.eigenvalues, exact.eigenvalues, rtol=1e-5)
    np.testing.assert_allclose(
        np.abs(fast.matrix.T @ exact.matrix), np.eye(6), atol=1e-5
    )
    with pytest.raises(ValueError, match="precision='half'"):
        projection.pca_projection(table, 6, precision="half")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_project_table_matches_float64_product_by_blocks(dtype):
    table = _table(rows=1000, width=16).astype(dtype)
    p = projection.pca_projection(table, 6)
    # Blocks of 64 rows, the first 999 rows kept: every block boundary is crossed.
    out = projection.project_table(table, p, num_rows=999, scale=1.5, chunk_rows=64)
    reference = 1.5 * np.asarray(table[:999], np.float64) @ p.matrix
    assert out.dtype == np.dtype(dtype) and out.shape == (999, 6)
    tolerance = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(
        out, reference, rtol=tolerance, atol=tolerance * np.abs(reference).max()
    )


def test_project_table_bad_input_names_weight_and_shapes():
    table = _table(rows=50, width=8)
    p = projection.pca_projection(table, 3)
    with pytest.raises(
        ValueError, match=r"`pos` would have 60 rows.*has 50 \(shape \(50, 8\)\)"
    ):
        projection.project_table(table, p, num_rows=60, name="pos")
    with pytest.raises(ValueError, match=r"`tok` of shape \(50, 9\).*d_T = 8"):
        projection.project_table(np.zeros((50, 9)), p, name="tok")
    broken = table.copy()
    broken[7, 2] = np.inf
    broken[40, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"`tok` of shape \(50, 8\) holds 2 NaN or Inf"
    ):
        projection.project_table(broken, p, chunk_rows=16, name="tok")
