"""The GUIDE projection `M`: principal directions of the teacher's embedding table.

All functions here are one-time host math in NumPy (float64 accumulation), so the
same teacher gives bit-identical projections on every Keras backend.

Reference: Trinh, Menghani, Vee, "GUIDE: Guided Initialization and Distillation of
Embeddings", arXiv 2510.06502.
"""

import dataclasses
import warnings

import numpy as np

from keras_guide import _checks
from keras_guide import _host
from keras_guide.initializers import selection

# Bytes per float64 chunk of the Gram accumulation: large enough that the
# chunk products run at full speed and the float64 adds stay small beside them
# (256,000 × 2,048 float32 on 2 cores: 1.07× one `EᵀE` product with 16,384-row
# chunks, 1.24× with 4,096), small beside any table worth compressing (a float32
# chunk of a 2,048-wide table is 128 MiB, an eighth of its 1,024-wide student).
_CHUNK_BYTES = 256 * 2**20


def _default_chunk_rows(width):
    return max(256, _CHUNK_BYTES // (8 * max(int(width), 1)))


def _chunk_rows(chunk_rows, width):
    if chunk_rows is None:
        return _default_chunk_rows(width)
    return _checks.integer(chunk_rows, "chunk_rows")


@dataclasses.dataclass(frozen=True)
class Projection:
    """An orthonormal map from the teacher's residual stream to the student's.

    A student vector `x_S` stands for the teacher vector `x_S Mᵀ (+ mean)`.

    Attributes:
        matrix: `(d_T, d_S)` float64 array `M` with orthonormal columns.
        mean: `(d_T,)` row mean that was removed before the PCA (zeros when
            the projection is not centred).
        explained_variance: fraction of the table's energy (of the centred
            table when `center=True`, of the feature-centred table for a
            mean-preserving projection) that the kept directions hold.
        eigenvalues: `(d_T,)` (or `(d_T - 1,)` when mean-preserving)
            eigenvalues of the Gram matrix, in decreasing order.
        kind: `"pca"`, `"activations"` (each `_mean_preserving` for
            LayerNorm families), `"select"`, `"channels"` or `"given"`.
    """

    matrix: np.ndarray
    mean: np.ndarray
    explained_variance: float
    eigenvalues: np.ndarray
    kind: str

    @property
    def teacher_dim(self):
        return self.matrix.shape[0]

    @property
    def student_dim(self):
        return self.matrix.shape[1]


def _check_table(table, dim, name):
    shape = tuple(table.shape)
    _checks.real_dtype(table, name, role="Table")
    if len(shape) != 2:
        raise ValueError(
            f"`{name}` must be a 2-D table of shape (vocabulary, width); "
            f"received shape {shape}. Pass the embedding matrix itself "
            "(for a 3-D kernel, reshape it to rows first)."
        )
    _check_dim(
        dim,
        shape[1],
        f" for `{name}` of shape {shape}: the student cannot be wider than the teacher",
    )


def _check_dim(dim, d_teacher, context=""):
    """Refuses a student width `dim` that is not an integer in `[1, d_teacher]`
    (`context` follows the range in the message)."""
    if (
        isinstance(dim, (bool, np.bool_))
        or not isinstance(dim, (int, np.integer))
        or not 1 <= dim <= d_teacher
    ):
        raise ValueError(
            f"`dim` must be an integer in [1, {d_teacher}]{context}. "
            f"Received: dim={dim!r}"
        )


def gram_matrix(table, weights=None, chunk_rows=None, precision="auto"):
    """Returns `(C, s, n) = (Σ w_r e_rᵀ e_r, Σ w_r e_r, Σ w_r)` in one pass.

    The table is read in chunks of `chunk_rows` rows; each chunk's product
    runs in `precision` and is accumulated in float64, so the extra memory is
    `O(d² + chunk_rows · d)` whatever the vocabulary size.

    Args:
        table: `(V, d)` array.
        weights: optional `(V,)` non-negative row weights (e.g. token
            frequencies); `None` weighs every row 1.
        chunk_rows: rows per chunk; `None` for chunks of 256 MiB in float64.
        precision: `"float32"` (chunk products at float32 speed; the error
            of one chunk is that of a `chunk_rows`-term float32 sum),
            `"float64"`, or `"auto"`: float64 for a float64 table, float32
            otherwise.

    Returns:
        The float64 Gram matrix `(d, d)`, weighted row sum `(d,)` and total
        weight (a float).
    """
    table = _checks.array_like(table, "table", role="Table")
    _checks.real_dtype(table, "table", role="Table")
    if len(table.shape) != 2:
        raise ValueError(
            "`table` must be a 2-D table of shape (rows, width); received shape "
            f"{tuple(table.shape)}."
        )
    num_rows, width = (int(n) for n in table.shape)
    chunk_rows = _chunk_rows(chunk_rows, width)
    gram = np.zeros((width, width), dtype=np.float64)
    row_sum = np.zeros((width,), dtype=np.float64)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if (
            weights.shape != (num_rows,)
            or not np.all(np.isfinite(weights))
            or (np.any(weights < 0))
            or not np.any(weights > 0)
        ):
            raise ValueError(
                f"`weights` must be {num_rows} finite, non-negative row weights, "
                f"not all zero, one per row of the table of shape {table.shape}. "
                f"Received: weights of shape {weights.shape} (min "
                f"{np.min(weights, initial=np.inf)}, max "
                f"{np.max(weights, initial=-np.inf)})"
            )
    if precision == "auto":
        precision = "float64" if _host.dtype_name(table) == "float64" else "float32"
    if precision not in ("float32", "float64"):
        raise ValueError(
            "`precision` must be 'auto', 'float32' or 'float64'. "
            f"Received: precision={precision!r}"
        )
    dtype = np.dtype(precision)
    chunks = _host.row_chunks(table, chunk_rows)
    for start, chunk in zip(range(0, num_rows, chunk_rows), chunks):
        chunk = np.asarray(chunk, dtype=dtype)
        if weights is None:
            gram += chunk.T @ chunk
            row_sum += chunk.sum(axis=0, dtype=np.float64)
        else:
            w = weights[start : start + chunk_rows]
            gram += (chunk * w[:, None].astype(dtype)).T @ chunk
            row_sum += w @ chunk
    total = float(num_rows if weights is None else weights.sum())
    return gram, row_sum, total


def fix_signs(vectors):
    """Flips each column so its largest-magnitude entry is positive.

    Eigenvectors are defined up to sign; this makes them deterministic. Ties
    in magnitude go to the first index.
    """
    vectors = np.array(vectors, dtype=np.float64)
    if vectors.size == 0:
        return vectors
    pivots = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[pivots, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def _top_eigenvectors(gram, count):
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues, kind="stable")[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    return eigenvalues, fix_signs(eigenvectors[:, order[:count]])


def householder(unit_vector):
    """Returns the symmetric orthogonal `H` with `H e_1 = unit_vector`."""
    u = np.asarray(unit_vector, dtype=np.float64)
    e1 = np.zeros_like(u)
    e1[0] = 1.0
    v = e1 - u
    norm_sq = float(v @ v)
    if norm_sq < 1e-30:
        return np.eye(u.shape[0])
    return np.eye(u.shape[0]) - 2.0 * np.outer(v, v) / norm_sq


def _explained(eigenvalues, kept):
    total = float(eigenvalues.sum())
    return 1.0 if total <= 0.0 else float(eigenvalues[:kept].sum() / total)


def pca_projection(
    table,
    dim,
    center=False,
    mean_preserving=False,
    weights=None,
    chunk_rows=None,
    precision="auto",
    name="table",
):
    """Computes GUIDE's projection `M` from the top principal directions of a table.

    `C = Σ_r w_r e_rᵀ e_r` is accumulated in float64 over chunks of rows; with
    `center=True` the weighted row mean `μ` is removed, `C ← C − (Σ w) μᵀμ`.
    `M` holds the top `dim` eigenvectors of `C` (signs fixed so each column's
    largest entry is positive) and the student table is `E_S = E_T M`:
    centring changes which directions are kept, not the table's offset (the
    student has no parameter that could carry `μ`).

    With `mean_preserving=True` (LayerNorm families, docs/method.md §1) the first
    basis vector is `1/√d_T`, the others are the top `dim − 1` principal
    directions of the feature-centred table `E_T (I − 11ᵀ/d_T)`, and the
    student basis is rotated by a Householder reflection `H` that sends `e_1`
    to `1/√d_S`: `M = [1/√d_T, v_1 … v_{dim−1}] H`. Then `MᵀM = I` and
    `M 1_S = √(d_S/d_T) 1_T`, so LayerNorm commutes with `M` up to `√(d_T/d_S)`.

    Args:
        table: `(V, d_T)` embedding table (array or Keras variable).
        dim: student width `d_S ≤ d_T`.
        center: remove the row mean before the PCA.
        mean_preserving: build the LayerNorm-compatible variant.
        weights: optional `(V,)` row weights (token frequencies).
        chunk_rows: rows per chunk of the one pass over the table.
        precision: chunk-product precision (see `gram_matrix`); sums are
            always accumulated in float64.
        name: the weight's name, used in error messages.

    Returns:
        A `Projection`.

    Raises:
        ValueError: the table is not 2-D, holds NaN/Inf, or `dim` is out of
            `[1, d_T]`.

    Example:
    >>> table = np.random.default_rng(0).normal(size=(100, 8))
    >>> p = pca_projection(table, 4)
    >>> p.matrix.shape
    (8, 4)

    Reference: arXiv 2510.06502.
    """
    table = _checks.array_like(table, name, role="Table")
    _check_table(table, dim, name)
    d_teacher = int(table.shape[1])
    chunk_rows = _chunk_rows(chunk_rows, d_teacher)
    gram, row_sum, total = gram_matrix(table, weights, chunk_rows, precision)
    if not np.all(np.isfinite(gram)):
        # The Gram pass doubles as the finiteness check; scan only on failure.
        bad = sum(
            int(np.size(c) - np.count_nonzero(np.isfinite(c)))
            for c in _host.row_chunks(table, chunk_rows)
        )
        _host.check_finite(np.zeros(0), name, shape=tuple(table.shape), bad=bad)
        raise ValueError(
            f"`{name}` of shape {tuple(table.shape)} is finite but its Gram matrix "
            "overflowed; rescale the table (e.g. divide by its largest value)."
        )
    mean = np.zeros((d_teacher,))
    if center and total > 0:
        mean = row_sum / total
        gram = gram - total * np.outer(mean, mean)
    return projection_from_gram(gram, dim, mean_preserving, mean=mean, name=name)


def _check_spectrum(eigenvalues, kept, name):
    """Refuses an all-zero second moment; warns when fewer than `kept`
    directions carry energy (the rest are arbitrary directions of a null
    space, and the explained variance does not show it)."""
    top = float(eigenvalues[0]) if eigenvalues.size else 0.0
    if top <= 0.0:
        raise ValueError(
            f"`{name}` has no energy to keep (its second-moment matrix is zero: "
            "an all-zero or constant table, or a centred table of one row). "
            "Pass the trained weight, or use a selection instead of a PCA."
        )
    rank = int(np.count_nonzero(eigenvalues > _RANK_TOLERANCE * top))
    if rank < kept:
        warnings.warn(
            f"`{name}` has only {rank} directions with energy (eigenvalues above "
            f"{_RANK_TOLERANCE:g} of the largest), fewer than the {kept} kept: the "
            f"other {kept - rank} are arbitrary directions of its null space.",
            stacklevel=3,
        )


# Eigenvalues below this share of the largest count as zero: above the
# round-off of float32 chunk products, below any trained table's spectrum.
_RANK_TOLERANCE = 1e-6


def projection_from_gram(
    gram, dim, mean_preserving=False, mean=None, kind="pca", name="table"
):
    """`M` from the top `dim` eigenvectors of a `(d_T, d_T)` second-moment matrix.

    The shared last step of `pca_projection` (the table's Gram) and of the
    activation basis (`keras_guide.calibration`): eigenvectors in decreasing
    order of eigenvalue, signs fixed, and for `mean_preserving=True` the
    LayerNorm-compatible construction described in `pca_projection`.

    Args:
        gram: symmetric positive semi-definite float64 `(d_T, d_T)`.
        dim: student width `d_S ≤ d_T`.
        mean_preserving: build the LayerNorm-compatible variant.
        mean: the `(d_T,)` mean that was removed (zeros when `None`).
        kind: the `Projection.kind` (`"_mean_preserving"` is appended).
        name: what the matrix describes, for error messages.

    Returns:
        A `Projection`.

    Raises:
        ValueError: `gram` is not a finite square matrix, is all zero, or
            `dim` is out of `[1, d_T]`. A warning says when fewer than the
            kept directions carry energy.
    """
    gram = np.asarray(gram, dtype=np.float64)
    d_teacher = gram.shape[0]
    if gram.shape != (d_teacher, d_teacher) or not np.all(np.isfinite(gram)):
        raise ValueError(
            f"`gram` must be a finite square matrix. Received: shape {gram.shape}"
        )
    _check_dim(dim, d_teacher)
    mean = np.zeros((d_teacher,)) if mean is None else mean
    if not mean_preserving:
        eigenvalues, vectors = _top_eigenvectors(gram, dim)
        _check_spectrum(eigenvalues, dim, name)
        explained = _explained(eigenvalues, dim)
        return Projection(vectors, mean, explained, eigenvalues, kind)
    ones_t = np.full((d_teacher,), 1.0 / np.sqrt(d_teacher))
    complement = householder(ones_t)[:, 1:]
    eigenvalues, inner = _top_eigenvectors(complement.T @ gram @ complement, dim - 1)
    if dim > 1:
        _check_spectrum(eigenvalues, dim - 1, name)
    directions = fix_signs(complement @ inner)
    basis = np.concatenate([ones_t[:, None], directions], axis=1)
    rotation = householder(np.full((dim,), 1.0 / np.sqrt(dim)))
    return Projection(
        basis @ rotation,
        mean,
        _explained(eigenvalues, dim - 1),
        eigenvalues,
        kind + "_mean_preserving",
    )


def project_table(
    table, projection, num_rows=None, scale=1.0, chunk_rows=None, name="table"
):
    """Returns the student table `scale · E_T[:num_rows] M`, computed by row blocks.

    The student's embedding table is the largest weight GUIDE writes (256,000 ×
    1,024 for a Gemma-2B-shaped teacher into `d_S = 1,024`), so it is not made
    from a float64 copy of the teacher's: each block of rows is multiplied by
    `M` in the table's own precision (float64 for a float64 table, float32
    otherwise: every entry is one `d_T`-term float32 dot product, and the
    student stores float32 or less anyway) and written into the result. Host
    memory: the result and one block.

    Args:
        table: `(V, d_T)` teacher table (array or Keras variable, possibly
            sharded: see `_host.row_chunks`).
        projection: a `Projection` or a `(d_T, d_S)` matrix.
        num_rows: keep the first `num_rows` rows (a shorter position table);
            `None` keeps all.
        scale: a multiplier folded into `M`.
        chunk_rows: rows per block; `None` for blocks of about 256 MiB.
        name: the teacher weight's name, used in error messages.

    Returns:
        A `(num_rows, d_S)` float32 array (float64 for a float64 table).

    Raises:
        ValueError: the table is not 2-D, its width is not `M`'s `d_T`,
            `num_rows` exceeds its rows, or it holds NaN/Inf.
    """
    matrix = as_projection(projection, name=f"projection for `{name}`").matrix
    table = _checks.array_like(table, name, role="Table")
    _checks.real_dtype(table, name, role="Table")
    scale = _checks.scalar(scale, "scale", where=f"`{name}`")
    shape = tuple(int(n) for n in table.shape)
    num_rows = (
        shape[0]
        if num_rows is None
        else _checks.integer(num_rows, "num_rows", minimum=0, where=f"`{name}`")
    )
    chunk_rows = _chunk_rows(chunk_rows, shape[-1] if shape else 1)
    if len(shape) != 2 or shape[1] != matrix.shape[0]:
        raise ValueError(
            f"`{name}` of shape {shape} cannot be projected by a "
            f"{matrix.shape} matrix: a table is (rows, d_T) with d_T = "
            f"{matrix.shape[0]}, the projection's teacher width."
        )
    if not 0 <= num_rows <= shape[0]:
        raise ValueError(
            f"The student's copy of `{name}` would have {num_rows} rows but the "
            f"teacher's has {shape[0]} (shape {shape}). GUIDE only shrinks: give "
            "the student at most as many positions as the teacher."
        )
    dtype = np.dtype("float64" if _host.dtype_name(table) == "float64" else "float32")
    scaled = (scale * matrix).astype(dtype)
    out = np.empty((num_rows, matrix.shape[1]), dtype)
    start = 0
    for chunk in _host.row_chunks(table, chunk_rows):
        if start >= num_rows:
            break
        chunk = np.asarray(chunk[: num_rows - start], dtype=dtype)
        np.matmul(chunk, scaled, out=out[start : start + len(chunk)])
        start += len(chunk)
    if not np.all(np.isfinite(out)):
        # NaN or Inf in a row reaches its output row (Inf · 0 is NaN too).
        rows = min(num_rows, shape[0])
        bad = sum(
            int(np.size(c) - np.count_nonzero(np.isfinite(c)))
            for c in _host.row_chunks(table, _default_chunk_rows(shape[1]))
        )
        _host.check_finite(np.zeros(0), name, shape=shape, bad=bad)
        raise ValueError(
            f"`{name}` of shape {shape} is finite but its first {rows} rows "
            f"times the projection overflow {dtype.name}; rescale the table."
        )
    return out


def selection_projection(teacher_dim, student_dim, indices=None, kind="select"):
    """Returns `M` made of identity columns at the kept indices.

    `E_T M` keeps `student_dim` coordinates of the teacher's stream. With the
    default uniformly selected indices this is exactly the uniform weight
    selection of Xu et al. 2023 ("Initializing Models with Larger Ones"), the
    baseline GUIDE is compared with; `indices` keeps given (sorted) ones.
    """
    teacher_dim = _checks.integer(teacher_dim, "teacher_dim")
    student_dim = _checks.integer(student_dim, "student_dim")
    if indices is None:
        indices = selection.uniform_indices(teacher_dim, student_dim)
    indices = _checks.indices(indices, "indices")
    if (
        indices.shape != (student_dim,)
        or len(set(indices.tolist())) != student_dim
        or (indices.size and not 0 <= indices.min() <= indices.max() < teacher_dim)
    ):
        raise ValueError(
            f"A selection needs {student_dim} distinct indices in [0, "
            f"{teacher_dim}). Received: {indices.tolist()}"
        )
    matrix = np.zeros((teacher_dim, student_dim))
    matrix[indices, np.arange(student_dim)] = 1.0
    return Projection(
        matrix, np.zeros((teacher_dim,)), float("nan"), np.zeros((0,)), kind
    )


def as_projection(matrix, name="projection"):
    """Wraps a user-given `(d_T, d_S)` matrix with orthonormal columns."""
    if isinstance(matrix, Projection):
        return matrix
    matrix = _checks.real_array(matrix, name, finite=False, role="The projection")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] > matrix.shape[0]:
        raise ValueError(
            f"`{name}` must be a (d_teacher, d_student) matrix with "
            f"d_student <= d_teacher. Received: shape {matrix.shape}"
        )
    _host.check_finite(matrix, name, role="The projection")
    gram = matrix.T @ matrix
    error = float(np.max(np.abs(gram - np.eye(matrix.shape[1])), initial=0.0))
    if error > 1e-4:
        raise ValueError(
            f"`{name}` of shape {matrix.shape} must have orthonormal columns "
            f"(MᵀM = I); max |MᵀM − I| = {error:.3g}. Orthonormalize it, e.g. "
            "with `np.linalg.qr(matrix)[0]`."
        )
    return Projection(
        matrix, np.zeros((matrix.shape[0],)), float("nan"), np.zeros((0,)), "given"
    )
