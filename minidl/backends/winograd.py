"""Winograd F(2x2, 3x3) convolution on float32 arrays: weight transforms and the three passes.

The tile transforms and GEMMs run in minidl/_kernels/winograd.pyx; the weight transforms
(G g G^T and its adjoint, O(OC * C) work) are computed here in float64 and rounded once, which
keeps them out of the error budget.

Error bound (stated and tested in tests/test_conv_winograd.py): against a float64 direct
convolution on He-initialised weights and ReLU activations, ||err||_inf / ||ref||_inf <= 1e-5
for the output, the input gradient and the weight gradient (measured: 2e-7 to 6e-7 on the
ResNet-20 and MNIST-example layers; the issue's limit for the default algorithm is 1e-4).
"""

from __future__ import annotations

import numpy as np

from minidl._kernels import winograd as _wino


def _g_rows(a: np.ndarray, axis: int) -> np.ndarray:
    """G (4x3) = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] applied along `axis` (3 -> 4), as
    element-wise sums: a BLAS call here would wake OpenBLAS's spinning threads beside minidl's."""
    a0, a1, a2 = (np.take(a, k, axis=axis) for k in range(3))
    return np.stack([a0, (a0 + a1 + a2) / 2, (a0 - a1 + a2) / 2, a2], axis=axis)


def _gt_rows(d: np.ndarray, axis: int) -> np.ndarray:
    """G^T (3x4) along `axis` (4 -> 3): the adjoint of _g_rows."""
    d0, d1, d2, d3 = (np.take(d, i, axis=axis) for i in range(4))
    return np.stack([d0 + (d1 + d2) / 2, (d1 - d2) / 2, (d1 + d2) / 2 + d3], axis=axis)


def transform_weight(weight: np.ndarray, flip: bool = False) -> np.ndarray:
    """U (16, OC, C) float32 = G g G^T for weight (OC, C, 3, 3). With flip, the kernel of the
    input gradient: channels swapped and taps reversed, U (16, C, OC)."""
    w = weight.astype(np.float64)
    if flip:
        w = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    u = _g_rows(_g_rows(w, 2), 3)  # (OC, C, 4, 4)
    return np.ascontiguousarray(
        u.transpose(2, 3, 0, 1).reshape(16, w.shape[0], w.shape[1]), dtype=np.float32
    )


def weight_from_transformed_grad(du: np.ndarray) -> np.ndarray:
    """The weight gradient (OC, C, 3, 3) = G^T dU G from dU (16, OC, C) (transform's adjoint)."""
    d = du.astype(np.float64).reshape(4, 4, du.shape[1], du.shape[2]).transpose(2, 3, 0, 1)
    return _gt_rows(_gt_rows(d, 2), 3).astype(np.float32)


def forward(x, weight, bias, out, padding, relu: bool, n_threads: int) -> None:
    """out (N, OC, OH, OW) = conv2d(x, weight) + bias (ReLU when relu); stride 1, 3x3."""
    _wino.forward(x, transform_weight(weight), bias, out, *padding, relu, n_threads)


def backward_input(grad_out, weight, grad_x, padding, n_threads: int) -> None:
    """grad_x (N, C, H, W): the forward algorithm on grad_out with the flipped kernel and the
    complementary padding 2 - p (negative when p > 2: the kernel then crops)."""
    ph, pw = padding
    _wino.forward(
        grad_out,
        transform_weight(weight, flip=True),
        None,
        grad_x,
        2 - ph,
        2 - pw,
        False,
        n_threads,
    )


def backward_weight(x, grad_out, grad_w, padding, n_threads: int) -> None:
    """grad_w (OC, C, 3, 3) from x and grad_out (fixed-order batch reduction)."""
    du = np.empty((16, grad_out.shape[1], x.shape[1]), dtype=np.float32)
    _wino.weight_grad(x, grad_out, du, *padding, n_threads)
    grad_w[...] = weight_from_transformed_grad(du)
