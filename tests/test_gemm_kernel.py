"""minidl._kernels.gemm against a float64 NumPy reference.

Shapes straddle every boundary of the kernel: the 6-row / 32-float (16-double) register tile, the
MC = 144 / KC = 256 / NC = 3072 cache blocks, and the small-shape threshold (m*n*k = 2**22), for
all four trans_a / trans_b forms and both dtypes. The error bound is the classical one for a dot
product of length k, |C - C_ref| <= k * eps * (|A| @ |B|), so a wrong element fails while any
summation order passes.
"""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidl._kernels import gemm

SMALL_SHAPES = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 1, 4),
    (3, 4, 1),
    (2, 3, 5),
    (7, 11, 13),
    (6, 32, 8),
    (5, 31, 17),
    (7, 33, 9),
    (12, 64, 2),
    (13, 65, 31),
    (64, 120, 400),  # LeNet fc1 forward
    (64, 400, 120),  # its input gradient
    (120, 400, 64),  # its weight gradient
]
# m * n * k above 2**22: the packed, cache-blocked path.
BLOCKED_SHAPES = [
    (145, 65, 513),  # one row past MC, k in three KC slices (171 each)
    (143, 97, 331),  # one row short of MC, n = 3 panels + 1 column
    (6, 3105, 257),  # n past NC = 3072 (two column blocks), k one past KC
    (301, 37, 389),
    (1, 4099, 1031),  # m = 1
    (2053, 1, 2053),  # n = 1
]
DTYPES = [np.float32, np.float64]
TRANS = list(itertools.product([False, True], [False, True]))


def operands(rng, m, n, k, trans_a, trans_b, dtype):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def op(x, trans):
    return x.T if trans else x


def assert_close_to_reference(out, a, b, trans_a, trans_b, alpha=1.0, beta=0.0, c0=None):
    a64, b64 = op(a, trans_a).astype(np.float64), op(b, trans_b).astype(np.float64)
    ref = alpha * (a64 @ b64)
    scale = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0:
        ref += beta * c0.astype(np.float64)
        scale += np.abs(beta * c0.astype(np.float64))
    k = a64.shape[1]
    eps = np.finfo(out.dtype).eps
    bound = (k + 2) * eps * scale + np.finfo(out.dtype).tiny
    err = np.abs(out.astype(np.float64) - ref)
    assert np.all(err <= bound), f"max error {err.max()} exceeds bound at {np.argmax(err - bound)}"


def run_matmul(a, b, trans_a, trans_b, n_threads=1):
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    # NaN-filled: beta = 0 must overwrite C without reading it.
    out = np.full((m, n), np.nan, dtype=a.dtype)
    gemm.matmul(a, b, out, trans_a, trans_b, n_threads)
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("m,n,k", SMALL_SHAPES + BLOCKED_SHAPES)
def test_matmul_matches_numpy(m, n, k, trans_a, trans_b, dtype):
    rng = np.random.default_rng(m * 1000003 + n * 1009 + k)
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    out = run_matmul(a, b, trans_a, trans_b, n_threads=2)
    assert_close_to_reference(out, a, b, trans_a, trans_b)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,k", [(13, 31), (64, 32), (7, 300)])
def test_matmul_columns_are_the_same_bits_whatever_tile_computes_them(m, k, trans_b, dtype):
    # The last panel's columns run on half- or quarter-width tiles (gemm_kernels.h): every
    # column of C must come out as when it sits in a full-width panel.
    rng = np.random.default_rng(m + k)
    a, b = operands(rng, m, 96, k, False, trans_b, dtype)
    wide = run_matmul(a, b, False, trans_b)
    for n in list(range(1, 41)) + [44, 52, 60, 63, 65, 70, 81, 90]:
        part = np.ascontiguousarray(b[:n] if trans_b else b[:, :n])
        assert np.array_equal(run_matmul(a, part, False, trans_b), wide[:, :n]), n


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("m,n,k", [(13, 65, 31), (64, 120, 400), (145, 65, 513), (6, 3105, 257)])
def test_matmul_bitwise_identical_for_1_2_3_threads(m, n, k, trans_a, trans_b, dtype):
    rng = np.random.default_rng(7)
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    results = [run_matmul(a, b, trans_a, trans_b, n_threads=t) for t in (1, 2, 3)]
    assert np.array_equal(results[0], results[1])
    assert np.array_equal(results[0], results[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("m,n,k", [(7, 33, 9), (145, 65, 513)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.5, 2.0), (2.0, 0.0)])
def test_matmul_alpha_beta_accumulate_into_out(m, n, k, alpha, beta, dtype):
    rng = np.random.default_rng(3)
    a, b = operands(rng, m, n, k, True, False, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out = c0.copy()
    gemm.matmul(a, b, out, True, False, 2, alpha=alpha, beta=beta)
    assert_close_to_reference(out, a, b, True, False, alpha, beta, c0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matmul_k_zero_writes_zeros(dtype):
    a = np.empty((4, 0), dtype)
    b = np.empty((0, 5), dtype)
    out = np.full((4, 5), np.nan, dtype)
    gemm.matmul(a, b, out)
    assert np.array_equal(out, np.zeros((4, 5), dtype))


def test_matmul_empty_output_is_a_no_op():
    out = np.empty((0, 5), np.float32)
    gemm.matmul(np.empty((0, 3), np.float32), np.ones((3, 5), np.float32), out)
    assert out.shape == (0, 5)


def test_matmul_propagates_nan_and_inf():
    a = np.ones((7, 40), np.float32)
    b = np.ones((40, 33), np.float32)
    a[2, 5] = np.nan
    b[3, 30] = np.inf
    out = run_matmul(a, b, False, False)
    assert np.isnan(out[2]).all()
    assert np.isinf(out[[0, 1, 3, 4, 5, 6], 30]).all()
    assert np.isfinite(np.delete(np.delete(out, 2, axis=0), 30, axis=1)).all()


def test_matmul_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="matmul: shapes do not match"):
        gemm.matmul(
            np.ones((3, 4), np.float32), np.ones((5, 2), np.float32), np.empty((3, 2), np.float32)
        )
    with pytest.raises(ValueError, match="matmul"):
        gemm.matmul(
            np.ones((3, 4), np.float32), np.ones((4, 2), np.float32), np.empty((3, 3), np.float32)
        )


@pytest.mark.parametrize(
    "a,b,out",
    [
        (np.ones((3, 4), np.float32), np.ones((4, 2), np.float64), np.empty((3, 2), np.float32)),
        (np.ones((3, 4), np.float64), np.ones((4, 2), np.float64), np.empty((3, 2), np.float32)),
        (np.ones((3, 4), np.int32), np.ones((4, 2), np.int32), np.empty((3, 2), np.int32)),
        (np.ones((4, 3), np.float32).T, np.ones((4, 2), np.float32), np.empty((3, 2), np.float32)),
        (np.ones((3, 4, 1), np.float32), np.ones((4, 2), np.float32), np.empty((3, 2), np.float32)),
    ],
    ids=["mixed-b", "mixed-out", "int32", "non-contiguous", "3-d"],
)
def test_matmul_rejects_wrong_dtype_layout_or_rank(a, b, out):
    with pytest.raises(ValueError):
        gemm.matmul(a, b, out)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("batch,m,n,k", [(5, 7, 33, 9), (3, 64, 120, 400), (2, 130, 131, 129)])
def test_batched_matmul_matches_numpy_and_is_thread_count_independent(
    batch, m, n, k, trans_a, trans_b, dtype
):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((batch, k, m) if trans_a else (batch, m, k)).astype(dtype)
    b = rng.standard_normal((batch, n, k) if trans_b else (batch, k, n)).astype(dtype)
    results = []
    for n_threads in (1, 2, 3):
        out = np.full((batch, m, n), np.nan, dtype)
        gemm.batched_matmul(a, b, out, trans_a, trans_b, n_threads)
        results.append(out)
    for i in range(batch):
        ai = a[i].T if trans_a else a[i]
        bi = b[i].T if trans_b else b[i]
        assert_close_to_reference(results[0][i], ai, bi, False, False)
        single = np.full((m, n), np.nan, dtype)
        gemm.matmul(a[i], b[i], single, trans_a, trans_b, 2)
        assert np.array_equal(single, results[0][i])
    assert np.array_equal(results[0], results[1])
    assert np.array_equal(results[0], results[2])


def test_batched_matmul_rejects_mismatched_batch_or_dtype():
    with pytest.raises(ValueError, match="batch sizes differ"):
        gemm.batched_matmul(
            np.ones((2, 3, 4), np.float32),
            np.ones((3, 4, 5), np.float32),
            np.empty((2, 3, 5), np.float32),
        )
    with pytest.raises(ValueError, match="batched_matmul: shapes do not match"):
        gemm.batched_matmul(
            np.ones((2, 3, 4), np.float32),
            np.ones((2, 5, 5), np.float32),
            np.empty((2, 3, 5), np.float32),
        )
    with pytest.raises(ValueError):
        gemm.batched_matmul(
            np.ones((2, 3, 4), np.float32),
            np.ones((2, 4, 5), np.float64),
            np.empty((2, 3, 5), np.float32),
        )


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 70),
    n=st.integers(1, 100),
    k=st.integers(1, 300),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    n_threads=st.integers(1, 3),
)
def test_matmul_hypothesis_shapes(m, n, k, trans_a, trans_b, dtype, n_threads):
    rng = np.random.default_rng(m + 7 * n + 13 * k)
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    out = run_matmul(a, b, trans_a, trans_b, n_threads)
    assert_close_to_reference(out, a, b, trans_a, trans_b)
    assert np.array_equal(out, run_matmul(a, b, trans_a, trans_b, 1))


@settings(max_examples=15, deadline=None)
@given(
    m=st.integers(100, 300),
    n=st.integers(60, 200),
    k=st.integers(200, 600),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
)
def test_matmul_hypothesis_blocked_shapes(m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m + 7 * n + 13 * k)
    a, b = operands(rng, m, n, k, trans_a, trans_b, np.float32)
    out = run_matmul(a, b, trans_a, trans_b, 2)
    assert_close_to_reference(out, a, b, trans_a, trans_b)
    assert np.array_equal(out, run_matmul(a, b, trans_a, trans_b, 1))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("m,n,k", [(1, 120, 400), (2, 5, 15), (3, 7, 16), (4, 9, 17), (4, 3, 0)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 2.0)])
def test_few_rows_times_transposed_b_dot_path(m, n, k, alpha, beta, dtype):
    """op(A) @ B^T with <= 4 rows takes the dot-product path: same contract as the others."""
    rng = np.random.default_rng(11)
    a, b = operands(rng, m, n, k, False, True, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out = c0.copy() if beta else np.full((m, n), np.nan, dtype=dtype)
    gemm.matmul(a, b, out, False, True, 2, alpha=alpha, beta=beta)
    if k == 0:
        np.testing.assert_array_equal(out, beta * c0 if beta else np.zeros((m, n)))
    else:
        assert_close_to_reference(out, a, b, False, True, alpha, beta, c0)


# A C declaration with type `long` (not `long long`): `long k`, `long *p`, `(long)x`, a Cython
# `cdef long` or `<long>` cast. English prose ("as long as") does not match.
C_LONG = re.compile(r"(?<!long )\blong\s+(?!long\b)(?:int\s+)?\**\s*[A-Za-z_]\w*\s*[,;=)\[]"
                    r"|\(\s*long\s*\)|\bcdef\s+long\b(?!\s+long)|<long>")


def test_kernel_sources_declare_no_c_long():
    """Sizes, strides and offsets are Py_ssize_t / ptrdiff_t: C `long` is 32 bits on Windows,
    so a k, lda or row offset past 2**31 - 1 would wrap there. (The GEMM kernels passed every
    size as long before.)"""
    kernels = Path(gemm.__file__).resolve().parent
    sources = sorted(p for p in kernels.iterdir() if p.suffix in (".h", ".pyx", ".pxd"))
    assert any(p.name == "gemm_kernels.h" for p in sources)
    found = [f"{p.name}:{i}: {line.strip()}" for p in sources
             for i, line in enumerate(p.read_text().splitlines(), 1) if C_LONG.search(line)]
    assert not found, "\n".join(found)


def test_c_long_pattern_matches_declarations_only():
    for decl in ("static void f(long kc, long m)", "for (long p = 0; p < k; p++)",
                 "cdef long steps = 1000", "x = <long>(y)", "n = (long)y;", "long *dst)"):
        assert C_LONG.search(decl), decl
    for text in ("long long *index", "const long long *ip = &index[0]", "each sample about `seconds` long. Returns",
                 "as long as it fits", "Py_ssize_t k, ptrdiff_t lda"):
        assert not C_LONG.search(text), text
