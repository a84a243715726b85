"""Which algorithm conv2d runs: set ``minidl.backends.conv.algorithm``.

``"auto"`` (default)
    Winograd for the passes the rule in `choose` names, F(4x4, 3x3) or F(2x2, 3x3) by the rule
    in `winograd_tile_for`, otherwise the kernel module's shape rule (direct kernels for few
    channels or full rows, im2col + GEMM for wide layers).
``"direct"``
    Direct kernels only (exact summation order of a plain convolution).
``"im2col"``
    im2col + GEMM for every groups-1 convolution (direct kernels for grouped ones).
``"winograd"``
    Winograd for every convolution it can run (float32, 3x3, stride 1, dilation 1, groups 1),
    the tile by `winograd_tile_for`, ``"auto"`` for the others.

``winograd_tile = 2`` or ``4`` forces F(2x2, 3x3) or F(4x4, 3x3) wherever Winograd runs (None,
the default: the rule). The choice depends on the shapes, the dtype and the instruction set
only, never on timings or on the thread count, so a run gives the same bits every time.

Winograd is not exact. Against a float64 reference on He-initialised weights and ReLU
activations (ResNet-20's layers at batch 16-32, the PyTorch MNIST example's 32->64 at batch 8,
a 256-channel reduction; minidl/backends/winograd.py), max ||err||_inf / ||ref||_inf measured
for output / input gradient / weight gradient: F(2x2) 6.5e-7 / 3.8e-7 / 6.2e-7, F(4x4)
1.2e-5 / 6.8e-6 / 5.7e-6. Both stay under the issue's 1e-4 for the default algorithm on every
pass, so the rule may give F(4x4) any pass; tests/test_conv_winograd.py asserts 1e-5 (F(2x2))
and 5e-5 (F(4x4)). The direct and im2col paths stay below 1e-6.
"""

from __future__ import annotations

import numpy as np

from minidl._kernels import _runtime
from minidl._kernels import conv as _conv
from minidl._kernels import winograd as _wino
from minidl.backends import winograd
from minidl.ops.activation import relu_grad

ALGORITHMS = ("auto", "direct", "winograd", "im2col")
algorithm = "auto"
# The Winograd tile: None lets `winograd_tile_for` pick F(2x2) or F(4x4) by its rule; 2 or 4
# forces F(2x2, 3x3) or F(4x4, 3x3) for every pass Winograd runs (tests, benchmarks).
winograd_tile: int | None = None

# Whether the conv kernels run an AVX2 or AVX-512 instance (decided once per process, like
# them; MINIDL_FORCE_ISA=baseline makes it False, as on a baseline CPU).
_WIDE_ISA = _runtime.kernel_isa_level() >= 1


def _current() -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"minidl.backends.conv.algorithm must be one of {ALGORITHMS}, got {algorithm!r}"
        )
    return algorithm


def winograd_tile_for(x_shape) -> int:
    """The output tile m of Winograd F(m x m, 3x3) for a convolution of x (N, C, H, W) that runs
    Winograd (every pass alike): `winograd_tile` when set, else 4 for images up to 64 pixels a
    side, 2 for larger ones (on every instruction set).

    Measured (2026-12-02, Xeon AVX-512, one thread's CPU time, ms, F(4x4) / F(2x2), forward,
    input grad, weight grad): 16->16 @32 3.8 / 5.3, 3.7 / 5.2, 8.1 / 11.1; 32->32 @16 3.0 /
    3.8, 3.0 / 3.7, 3.3 / 4.1; 32->64 @26 9.0 / 11.1, 10.3 / 14.4, 6.8 / 10.7. Images of
    fewer than 16 tiles (up to 12 pixels a side) run the F(4x4) transforms over all the images
    of a block at once (minidl/_kernels/winograd.pyx); with that (2026-12-03, EPYC AVX-512,
    batch 128, best of 40-120 samples): 64->64 @8 2.7 / 4.1, 2.8 / 4.1, 3.4-3.7 / 4.5-4.7;
    16->16 @8 0.42 / 0.79, 0.42 / 0.57, 0.69 / 0.88; 32->32 @12 3.3 / 3.5, 3.4 / 3.5, 3.0 /
    3.7; 64->64 @4 0.86 / 1.42, 1.26 / 1.45, 1.05 / 1.56; and with MINIDL_FORCE_ISA=x86-64-v3
    (AVX2, the patches gathered lane by lane) 64->64 @8 forward 3.2 / 4.7, weight grad 3.5 /
    5.3; since 2026-12-07 AVX2 permutes them (forward 3.23 -> 2.45, weight grad 3.56 -> 2.65,
    one thread, GEMM on AVX-512 in both). F(4x4) blocks hold whole images, so above 64 pixels
    a side (256 tiles) its blocks outgrow the L2 cache.
    """
    if winograd_tile is not None:
        if winograd_tile not in (2, 4):
            raise ValueError(
                f"minidl.backends.conv.winograd_tile must be None, 2 or 4, got {winograd_tile!r}"
            )
        return winograd_tile
    return 4 if max(x_shape[2], x_shape[3]) <= 64 else 2


def winograd_eligible(dtype, weight_shape, stride, dilation, groups) -> bool:
    """Whether the Winograd kernels can run this convolution at all."""
    return (
        np.dtype(dtype) == np.float32
        and tuple(weight_shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
    )


def choose(pass_: str, x_shape, weight_shape, dtype, stride, dilation, groups) -> str:
    """The algorithm of one pass ("forward", "input" or "weight" gradient) of a convolution:
    "winograd", or the kernel module's "auto" / "direct" / "im2col".

    The "auto" rule, from one thread's CPU time on AVX-512 (Sapphire Rapids, 2026-12-01, ms,
    Winograd / the kernel module's choice; batch 128, 64 for 32->64 @26):

    ============  ===========  ===========  ===========
    layer         forward      input grad   weight grad
    ============  ===========  ===========  ===========
    16->16 @32    7.0 / 6.1    7.2 / 6.1    12.7 / 18.6
    32->32 @16    5.2 / 4.7    6.2 / 5.1    7.0 / 9.3
    64->64 @8     4.8 / 8.4    5.3 / 8.3    5.4 / 9.1
    32->64 @26    11.1 / 12.5  13.8 / 12.4  13.4 / 14.6
    3->16 @32     2.2 / 1.2    3.2 / 3.6    7.8 / 6.3
    ============  ===========  ===========  ===========

    The weight gradient's GEMMs reduce over the tiles (long k) and win from 16 channels on; the
    forward and input-gradient GEMMs reduce over C (or OC), short next to the transforms' cost,
    and win only with C * OC >= 2048 (forward) or >= 4096 (input gradient). Without AVX2 or
    AVX-512 the GEMM is too slow for Winograd to pay.

    Re-measured 2026-12-02 (load ~6, one thread, ms, Winograd / kernel module) after the
    row-vector weight gradient started parking its accumulators image by image: 16->16 @32
    9.2 / 6.7 and 32->64 @26 (an image's 144 tiles exceed a block: run-by-run transforms)
    12.7 / 10.2 now go to the kernel module; 32->32 @16 3.9 / 4.3 and 64->64 @8 3.3 / 3.3 stay.
    Hence the weight gradient's rule: C * OC >= 1024 and an image's tiles within one block.

    The table above is F(2x2)'s. Where `winograd_tile_for` gives F(4x4) (2026-12-02, Xeon
    AVX-512, load ~4, one thread's CPU time, ms, F(4x4) / the kernel module's best, forward,
    input grad, weight grad): 16->16 @32 3.8 / 5.4, 3.7 / 5.2, 8.1 / 8.6; 32->32 @16 3.0 / 4.6,
    3.0 / 4.7, 3.3 / 8.8; 32->64 @26 9.0 / 13.1, 10.3 / 13.1, 6.8 / 14.2: every pass with 16 or
    more channels on both sides goes to Winograd (the 3->16 stem stays with the direct kernels:
    1.4 / 2.6 / 2.3 against F(4x4)'s 1.7 / 2.2 / 4.4).

    Small batches: the weight transforms cost a fixed time per call (0.01-0.4 ms from 16 to 64
    channels), so the batch must hold at least 4 * max(C, OC) tiles (2026-12-02, forward, one
    thread's CPU time, ms, Winograd / direct: batch 1: 16->16 @32 0.05 / 0.06, 32->32 @16 0.15 /
    0.08, 64->64 @8 0.26 / 0.17; batch 4: 0.12 / 0.15, 0.18 / 0.16, 0.31 / 0.27; batch 8: 0.21 /
    0.29, 0.26 / 0.27, 0.39 / 0.40).
    """
    algo = _current()
    if algo in ("direct", "im2col"):
        return algo
    if not winograd_eligible(dtype, weight_shape, stride, dilation, groups):
        return "auto"
    if algo == "winograd":
        return "winograd"
    oc, c = weight_shape[0], weight_shape[1]
    if not _WIDE_ISA or min(c, oc) < 16:
        return "auto"
    # Too few tiles to pay for the weight transforms (small batches). Counted at F(2x2)'s
    # size whatever the tile, as measured: F(4x4) on 8x8 images (4 tiles) beats the direct
    # kernels from batch 8 on (2026-12-03, EPYC, 64->64 forward, one thread, ms, F(4x4) /
    # direct: batch 8 0.29-0.34 / 0.49-0.55, 16 0.46-0.56 / 0.89-0.91, 32 0.81-1.32 / 1.67-1.76).
    if x_shape[0] * -(-x_shape[2] // 2) * -(-x_shape[3] // 2) < 4 * max(c, oc):
        return "auto"
    tile = winograd_tile_for(x_shape)
    if tile == 4:
        # Every pass, the weight gradient of 16 input channels too since its GEMMs pack a
        # 16-column transposed panel by register transposes (2026-12-07, EPYC AVX-512, batch
        # 128, min of 21, ms, F(4x4) / the row-vector kernel, 1 thread; 2 threads): 16->16 @32
        # 7.36 / 9.16; 3.70 / 4.48, @16 2.09 / 2.44; 1.13 / 1.16, 16->32 @32 11.1 / 16.7; 5.78 /
        # 8.28, 32->16 @32 11.7 / 17.0; 6.30 / 8.42, 16->16 @64 (batch 64) 10.8 / 13.2; 6.81 /
        # 7.61. Before that the row-vector kernel had won at 16 input channels (2026-12-02,
        # 16->16 @32 9.6 / 8.0).
        return "winograd"
    tiles = ((x_shape[2] + 1) // 2) * ((x_shape[3] + 1) // 2)  # per image (padding aside)
    wins = {
        "forward": c * oc >= 2048,
        "input": c * oc >= 4096,
        "weight": c * oc >= 1024 and tiles <= _wino.block_tiles(c, oc),
    }[pass_]
    return "winograd" if wins else "auto"


def conv2d_forward(x, weight, bias, out, stride, padding, dilation, groups, relu, n_threads):
    """out (N, OC, OH, OW) = conv2d(x, weight) + bias (ReLU when relu) by the chosen algorithm.
    Arguments as minidl._kernels.conv.conv2d_forward, with (h, w) pairs."""
    algo = choose("forward", x.shape, weight.shape, x.dtype, stride, dilation, groups)
    if algo == "winograd" and out.size and x.size:
        tile = winograd_tile_for(x.shape)
        if winograd.forward(x, weight, bias, out, padding, relu, n_threads, tile):
            return
        # An infinity or NaN met the transforms: the direct result is PyTorch's.
        algo = _rest()
    _conv.conv2d_forward(
        x, weight, bias, out, *stride, *padding, *dilation, groups, relu, n_threads, algo
    )


def conv2d_backward(
    x,
    weight,
    grad_out,
    relu_out,
    grad_x,
    grad_w,
    grad_b,
    stride,
    padding,
    dilation,
    groups,
    n_threads,
):
    """Fill grad_x, grad_w, grad_b (those not None) by the chosen algorithms; relu_out: the
    forward output when it had the fused ReLU, else None."""
    args = (x.shape, weight.shape, x.dtype, stride, dilation, groups)
    wino_x = grad_x is not None and choose("input", *args) == "winograd"
    wino_w = grad_w is not None and choose("weight", *args) == "winograd"
    if grad_out.size == 0 or x.size == 0 or not (wino_x or wino_w):
        _conv.conv2d_backward(
            x,
            weight,
            grad_out,
            relu_out,
            grad_x,
            grad_w,
            grad_b,
            *stride,
            *padding,
            *dilation,
            groups,
            n_threads,
            _rest(),
        )
        return
    if relu_out is not None:
        grad_out = relu_grad(relu_out, grad_out)  # NaN passes, as torch
    tile = winograd_tile_for(x.shape)
    # A non-finite Winograd result is redone directly (winograd_kernels.h): the transforms
    # turn Inf - Inf into NaN and spread a NaN over whole tiles. The weight gradient is small
    # (OC x C x 9) and checked here; the input gradient's output transform reports it.
    if wino_x:
        wino_x = winograd.backward_input(grad_out, weight, grad_x, padding, n_threads, tile)
    if wino_w:
        winograd.backward_weight(x, grad_out, grad_w, padding, n_threads, tile)
        wino_w = bool(np.isfinite(grad_w).all())
    if grad_b is not None:
        _conv._bias_grad(grad_out, grad_b, n_threads)
    rest_x = None if wino_x else grad_x
    rest_w = None if wino_w else grad_w
    if rest_x is not None or rest_w is not None:
        _conv.conv2d_backward(
            x,
            weight,
            grad_out,
            None,
            rest_x,
            rest_w,
            None,
            *stride,
            *padding,
            *dilation,
            groups,
            n_threads,
            _rest(),
        )


def _rest() -> str:
    """The kernel module's algorithm for the passes Winograd does not take."""
    algo = _current()
    return algo if algo in ("direct", "im2col") else "auto"
