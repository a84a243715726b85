"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution on float32 arrays: the transforms and the
three passes.

A tile of m x m outputs (m = `tile`, 2 or 4) is A^T [(G g G^T) . (B^T d B)] A, d the
(m + 2) x (m + 2) input patch, g the 3x3 kernel, "." the element-wise product. `toom_cook`
derives A^T, G and B^T exactly (fractions) from the interpolation points, the C kernels
(minidl/_kernels/winograd_kernels*.h) apply B^T and A^T written out for those points, and the
weight transforms (G g G^T and its adjoint, O(OC * C) work, winograd_weights.h) are computed
from this G in float64 and rounded once, which keeps them out of the error budget.

Points (`POINTS`): F(2x2) uses 0, 1, -1 and infinity; F(4x4) 0, 1, -1, 2, -2 and infinity
(Lavin & Gray 2016). With these, B^T and A^T have small integer entries (powers of two apart
from a 5), exact in float32, and each +-a pair shares its sums and differences (the kernels'
transforms take half the adds). A float32 NumPy simulation of F(4x4) on 32->32 and 64->64
3x3 @16 (batch 8, He weights, ReLU inputs) gave ||err||_inf / ||ref||_inf 3.1e-6 / 4.5e-6
for these points, 4.5e-6 / 4.5e-6 for 0, +-1, +-1/2 and 1.3e-6 / 2.1e-6 for 0, +-1, 1/2, -2
(Barabasz et al. 2018): the last halves the error but loses the pair sharing, and all three
stay 20x under the 1e-4 limit.

Error (stated in minidl/backends/conv.py, tested in tests/test_conv_winograd.py): against a
float64 direct convolution on He-initialised weights and ReLU activations (ResNet-20's stage
layers and 3->16 stem at batch 16-32, the PyTorch MNIST example's conv2 at batch 8, a
256-channel reduction at batch 8; two seeds), max ||err||_inf / ||ref||_inf over the cases,
output / input grad / weight grad: F(2x2) 6.5e-7 / 3.8e-7 / 6.2e-7 (asserted <= 1e-5),
F(4x4) 1.2e-5 / 6.8e-6 / 5.7e-6 (asserted <= 5e-5; the issue's limit for the default
algorithm is 1e-4).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from minidl._kernels import winograd as _wino

# The finite interpolation points of each tile size (infinity is the last point of both).
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2)}


def _poly_mul(p: list, q: list) -> list:
    """Coefficients (lowest first) of the product of two polynomials."""
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def toom_cook(m: int, points, r: int = 3) -> tuple[list, list, list]:
    """(A^T (m x n), G (n x r), B^T (n x n)), n = m + r - 1, of F(m, r) for the n - 1 finite
    `points` and infinity, as lists of rows of Fractions.

    F(m, r) (correlation y_i = sum_k d_{i+k} g_k) is the transpose of the linear convolution
    of u (length m) with g (length r), which Toom-Cook computes as interpolation of the
    products of the evaluations of u and g at the points. Transposed: A^T is the evaluation of
    u (A^T[i][j] = a_j^i; the infinity column picks the leading coefficient), B^T the transposed
    Lagrange interpolation (row j: the coefficients of M_j(x) = prod_{l != j} (x - a_l),
    infinity's row those of prod_l (x - a_l)), G the evaluation of g divided by M_j(a_j)
    (infinity's row: the leading coefficient)."""
    a = [Fraction(p) for p in points]
    n = m + r - 1
    if len(a) != n - 1 or len(set(a)) != len(a):
        raise ValueError(f"toom_cook: F({m}, {r}) needs {n - 1} distinct points, got {points}")
    at = [[x**i for x in a] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    bt = []
    for j, x in enumerate(a):
        mj = [Fraction(1)]
        for k, y in enumerate(a):
            if k != j:
                mj = _poly_mul(mj, [-y, Fraction(1)])
        scale = sum(c * x**i for i, c in enumerate(mj))  # M_j(a_j)
        g.append([x**k / scale for k in range(r)])
        bt.append(mj + [Fraction(0)] * (n - len(mj)))
    full = [Fraction(1)]
    for y in a:
        full = _poly_mul(full, [-y, Fraction(1)])
    bt.append(full)
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    return at, g, bt


def transform_matrices(tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(tile x tile, 3x3) as float64 arrays, in the sign convention of the C
    kernels: F(2x2)'s were written with B^T's rows 0 and infinity negated, and with them G's row
    0 and A^T's infinity column, which leaves every tile's result unchanged."""
    at, g, bt = (np.array(mat, dtype=np.float64) for mat in toom_cook(tile, POINTS[tile]))
    if tile == 2:
        bt = bt * np.array([-1.0, 1.0, 1.0, -1.0])[:, None]
        g = g * np.array([-1.0, 1.0, 1.0, 1.0])[:, None]
        at = at * np.array([1.0, 1.0, 1.0, -1.0])
    return at, g, bt


_G = {tile: transform_matrices(tile)[1] for tile in POINTS}


def transform_weight(
    weight: np.ndarray, flip: bool = False, tile: int = 2, *, n_threads: int
) -> np.ndarray:
    """U (E, OC, C) float32 = G g G^T for weight (OC, C, 3, 3), E = (tile + 2)^2, computed in
    float64 and rounded once (bitwise the same for any n_threads). With flip, the kernel of the
    input gradient: channels swapped and taps reversed, U (E, C, OC)."""
    w = np.ascontiguousarray(weight, dtype=np.float32)
    n = tile + 2
    oc, c = w.shape[:2]
    u = np.empty((n * n, c, oc) if flip else (n * n, oc, c), dtype=np.float32)
    _wino.transform_weight(w, _G[tile], flip, u, n_threads)
    return u


def weight_from_transformed_grad(du: np.ndarray, *, n_threads: int) -> np.ndarray:
    """The weight gradient (OC, C, 3, 3) = G^T dU G from dU (E, OC, C) (transform's adjoint;
    bitwise the same for any n_threads)."""
    n = int(round(du.shape[0] ** 0.5))
    grad_w = np.empty((du.shape[1], du.shape[2], 3, 3), dtype=np.float32)
    _wino.weight_from_transformed(du, _G[n - 2], grad_w, n_threads)
    return grad_w


def forward(x, weight, bias, out, padding, relu: bool, n_threads: int, tile: int = 2) -> bool:
    """out (N, OC, OH, OW) = conv2d(x, weight) + bias (ReLU when relu); stride 1, 3x3. False
    when an output came out non-finite: then out is not exact and is to be recomputed."""
    u = transform_weight(weight, tile=tile, n_threads=n_threads)
    return _wino.forward(x, u, bias, out, *padding, relu, n_threads)


def backward_input(grad_out, weight, grad_x, padding, n_threads: int, tile: int = 2) -> bool:
    """grad_x (N, C, H, W): the forward algorithm on grad_out with the flipped kernel and the
    complementary padding 2 - p (negative when p > 2: the kernel then crops). False when a
    value came out non-finite, as `forward`."""
    ph, pw = padding
    return _wino.forward(
        grad_out,
        transform_weight(weight, flip=True, tile=tile, n_threads=n_threads),
        None,
        grad_x,
        2 - ph,
        2 - pw,
        False,
        n_threads,
    )


def backward_weight(x, grad_out, grad_w, padding, n_threads: int, tile: int = 2) -> None:
    """grad_w (OC, C, 3, 3) from x and grad_out (fixed-order batch reduction)."""
    n = tile + 2
    du = np.empty((n * n, grad_out.shape[1], x.shape[1]), dtype=np.float32)
    _wino.weight_grad(x, grad_out, du, *padding, n_threads)
    grad_w[...] = weight_from_transformed_grad(du, n_threads=n_threads)
