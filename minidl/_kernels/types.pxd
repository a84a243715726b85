# cython: language_level=3
# The kernels' one float32/float64 type: a kernel is written once over `real` and Cython
# compiles it for both. Kernels other modules call are fused `cdef` functions declared in a
# .pxd (gemm.pxd: `gemm`); the pointers' type picks the specialization.
#
# From Python, a Cython `def` taking fused memoryviews dispatches on the arguments' dtypes. On
# Cython 3.3 (Python 3.11, two (64, 10) arrays, best of 40 x 100k calls, 2026-12-02) a call
# costs ~400 ns as a fused def, ~220 ns as a plain def with the same typed memoryviews and
# ~250 ns as a plain def that picks `kernel[float](...)` / `kernel[double](...)` itself. So:
# the entry points the op layer calls per layer and per parameter at every step, on small
# arrays (matmul, the SGD update, the loss, batch norm) pick the specialization themselves;
# the others (pooling, ReLU's backward, the convolution's generic and im2col paths)
# are fused defs.

ctypedef fused real:
    float
    double
