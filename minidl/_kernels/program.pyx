# cython: language_level=3
# distutils: define_macros=NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION
"""The flat program of a compiled graph: kernel calls over preplanned buffers, run by one loop.

minidl.static.lower builds a Program from a static graph's schedule. Each instruction is an
opcode, up to 8 pointers and up to 16 sizes; a Python node is an instruction that calls a
Python callable (an op without a kernel here), with the GIL held only around it. Everything is
validated once, when the program is built: shapes, dtypes, contiguity, buffer sizes and the
algorithm each convolution takes. At run time an instruction trusts its pointers and sizes:
they point into arrays the program owns (`keep`), or into parameter arrays that the caller
checks and re-points (`bind`) before every run when they were replaced.

`call` is a whole inference call in one C function for the common case (inputs of the
program's shapes and dtypes, parameters as last bound): check, copy the inputs in, run, copy
the outputs out. Anything else it leaves to the caller's Python path, which binds, copies
strided inputs, or replays.

The kernels are the ones the ops call (conv_kernels.h, pool_kernels.h, minidl's GEMM), driven
with the same arguments and work split as minidl._kernels.conv / pool / gemm, so a program gives
the bits of the Python replay. Below the size thresholds of those modules an instruction runs on
the calling thread without entering a parallel region (batch-1 inference does not allocate and
does not start threads).
"""

import numpy as np

cimport numpy as cnp
from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer,
)
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.math cimport exp, log
from libc.stdint cimport int64_t
from libc.string cimport memcmp, memcpy, memset

from minidl._kernels.conv_kernels cimport (
    conv_db_packed_f32, conv_direct_f32_rows, conv_dw_f32_tb, conv_dw_packed_f32,
    conv_dw_rows_items, conv_dx_images_group, conv_dw_rows_plan, conv_dw_rows_run, conv_dw_rows_task,
    conv_packed_f32_pixels, conv_pad_phases_f32, conv_prefetch_image, conv_transpose_grad_f32,
)
from minidl._kernels.gemm cimport gemm
from minidl._kernels.pool_kernels cimport max_pool_2x2_f32, max_unpool_2x2_f32
from minidl._kernels.threadpool cimport parallel_for

cnp.import_array()

# Work below which an instruction runs on the calling thread, without a parallel region. The
# work items are the kernel modules' (so are the bits: any thread count gives the same), the
# thresholds higher than theirs (conv 65536 multiply-adds, pool 32768 elements): a LeNet
# batch-1 program with 2 threads took 18.7 us at those against 13-14 us on one thread (each
# region ~1 us, and a wait for a descheduled worker on a busy machine).
cdef Py_ssize_t CONV_MIN_PARALLEL = 1 << 19
cdef Py_ssize_t POOL_MIN_PARALLEL = 1 << 16
# Elementwise instructions (relu, add, copies): a parallel region costs ~1 us, ~10^5 elements.
cdef Py_ssize_t ELEMENTWISE_MIN_PARALLEL = 1 << 17
# Elements per work item of a parallel elementwise instruction (64 KB of float32).
cdef Py_ssize_t ELEMENTWISE_BLOCK = 1 << 14

# GEMM's alpha and beta as float32 (they select the float specialization of the fused gemm).
cdef float ONE = 1
cdef float ZERO = 0

MAX_POINTERS = 8
MAX_SIZES = 24

cdef enum Opcode:
    OP_PYTHON = 0
    OP_COPY
    OP_PAD_PLANES
    OP_PACK_CONV_WEIGHTS
    OP_CONV_ROWS
    OP_CONV_ROWS_IMAGES
    OP_CONV_PIXELS
    OP_MAX_POOL_2X2
    OP_LINEAR
    OP_RELU
    OP_ADD
    OP_LINEAR_BACKWARD
    OP_RELU_BACKWARD
    OP_MAX_POOL_BACKWARD
    OP_SOFTMAX_CROSS_ENTROPY
    OP_SOFTMAX_CROSS_ENTROPY_BACKWARD
    OP_CONV_DW_DIRECT
    OP_CONV_TRANSPOSE_GRAD
    OP_CONV_DW_PACKED
    OP_SUM_CHUNKS
    OP_ADD_BACKWARD
    OP_CONV_DX_IMAGES

OPCODES = {
    "python": OP_PYTHON,
    "copy": OP_COPY,
    "pad_planes": OP_PAD_PLANES,
    "pack_conv_weights": OP_PACK_CONV_WEIGHTS,
    "conv_rows": OP_CONV_ROWS,
    "conv_rows_images": OP_CONV_ROWS_IMAGES,
    "conv_pixels": OP_CONV_PIXELS,
    "max_pool_2x2": OP_MAX_POOL_2X2,
    "linear": OP_LINEAR,
    "relu": OP_RELU,
    "add": OP_ADD,
    "linear_backward": OP_LINEAR_BACKWARD,
    "relu_backward": OP_RELU_BACKWARD,
    "max_pool_backward": OP_MAX_POOL_BACKWARD,
    "softmax_cross_entropy": OP_SOFTMAX_CROSS_ENTROPY,
    "softmax_cross_entropy_backward": OP_SOFTMAX_CROSS_ENTROPY_BACKWARD,
    "conv_dw_direct": OP_CONV_DW_DIRECT,
    "conv_transpose_grad": OP_CONV_TRANSPOSE_GRAD,
    "conv_dw_packed": OP_CONV_DW_PACKED,
    "sum_chunks": OP_SUM_CHUNKS,
    "add_backward": OP_ADD_BACKWARD,
    "conv_dx_images": OP_CONV_DX_IMAGES,
}

cdef struct Instr:
    int op
    Py_ssize_t n[24]
    void *p[8]


cdef inline int _threads(Py_ssize_t work, Py_ssize_t threshold, int n_threads) noexcept nogil:
    return n_threads if work >= threshold else 1


cdef void _pad_planes(const Instr *ins, int n_threads) noexcept nogil:
    """conv._pad_planes into a preplanned buffer: (N, planes_out) channels (those past C zero)
    of sh * sw zero-padded stride-phase planes of Hp x Wp of src (N, C, H, W), masked by
    relu_out where given, then `slack` zero floats.
    n: N, C, H, W, planes_out, Hp, Wp, top, left, slack, sh, sw."""
    cdef Py_ssize_t N = ins.n[0], planes = ins.n[4]
    cdef Py_ssize_t plane = ins.n[10] * ins.n[11] * ins.n[5] * ins.n[6], p
    cdef float *dst = <float *>ins.p[2]
    cdef int nt = _threads(N * planes * plane, CONV_MIN_PARALLEL, n_threads)
    parallel_for(_pad_task, <void *>ins, N * planes, nt)
    if ins.n[9]:
        memset(dst + N * planes * plane, 0, ins.n[9] * sizeof(float))


cdef void _pad_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Padded channels [begin, end) of (n, c) (a parallel_for task, as the other *_task)."""
    cdef const Instr *ins = <const Instr *>args
    cdef Py_ssize_t plane = ins.n[10] * ins.n[11] * ins.n[5] * ins.n[6], p
    for p in range(begin, end):
        _pad_one(ins, p, plane)


cdef inline void _pad_one(const Instr *ins, Py_ssize_t p, Py_ssize_t plane) noexcept nogil:
    cdef const float *src = <const float *>ins.p[0]
    cdef const float *mask = <const float *>ins.p[1]
    cdef float *dst = <float *>ins.p[2] + p * plane
    cdef Py_ssize_t C = ins.n[1], H = ins.n[2], W = ins.n[3], planes = ins.n[4]
    cdef Py_ssize_t n = p // planes, c = p % planes
    if c < C:
        conv_pad_phases_f32(src + (n * C + c) * H * W, H, W,
                            mask + (n * C + c) * H * W if mask != NULL else NULL, dst,
                            ins.n[5], ins.n[6], ins.n[7], ins.n[8], ins.n[10], ins.n[11])
    else:
        memset(dst, 0, plane * sizeof(float))


cdef void _pack_conv_weights(const Instr *ins) noexcept nogil:
    """conv._pack_weights into a preplanned buffer zeroed once at build time (only the valid
    entries are written, so the zero padding past OC stays). p: weight, packed, and (inference
    programs) a copy of the weight last packed and its filled flag (uint8), or NULL, NULL.
    n: OC, C, KH, KW, ocb, flip.

    An inference program's weights rarely change between calls, but nothing tells the program
    when they do (any in-place write to the array): the copy is compared instead, and packing
    (a gather, 1.4 us of LeNet's 15 us batch-1 call) runs only when a byte differs."""
    cdef const float *w = <const float *>ins.p[0]
    cdef float *dst = <float *>ins.p[1]
    cdef float *seen = <float *>ins.p[2]
    cdef unsigned char *filled = <unsigned char *>ins.p[3]
    cdef Py_ssize_t OC = ins.n[0], C = ins.n[1], KH = ins.n[2], KW = ins.n[3], ocb = ins.n[4]
    cdef bint flip = ins.n[5]
    cdef Py_ssize_t T = KH * KW, OCo = C if flip else OC, Ci = OC if flip else C
    cdef Py_ssize_t blk, c, t, i, o, n_valid
    cdef size_t nbytes = OC * C * T * sizeof(float)
    if seen != NULL:
        if filled[0] and memcmp(seen, w, nbytes) == 0:
            return
        memcpy(seen, w, nbytes)
        filled[0] = 1
    # In the order of dst (blocks, channels, taps, lanes): the writes stream.
    for blk in range((OCo + ocb - 1) // ocb):
        n_valid = min(ocb, OCo - blk * ocb)
        for c in range(Ci):
            for t in range(T):
                for i in range(n_valid):
                    o = blk * ocb + i
                    if flip:
                        dst[i] = w[((c * OCo + o) * KH + KH - 1 - t // KW) * KW + KW - 1 - t % KW]
                    else:
                        dst[i] = w[(o * Ci + c) * T + t]
                dst += ocb


cdef void _conv_rows(const Instr *ins, int n_threads) noexcept nogil:
    """conv._direct_conv's loop. p: padded input, tap offsets, packed weights, bias or NULL,
    out, row clip table or NULL (conv.row_clips). n: N, nsteps, block_steps, ocb, OC, OH, OW,
    Wp, image (floats per padded image), nblk, nrb, rows, relu, work (multiply-adds)."""
    cdef Py_ssize_t N = ins.n[0], nblk = ins.n[9], nrb = ins.n[10], item
    cdef int nt = _threads(ins.n[13], CONV_MIN_PARALLEL, n_threads)
    parallel_for(_conv_rows_item_task, <void *>ins, N * nblk * nrb, nt)


cdef void _conv_rows_item_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                               int worker) noexcept nogil:
    cdef Py_ssize_t item
    for item in range(begin, end):
        _conv_rows_item(<const Instr *>args, item)


cdef inline void _conv_rows_item(const Instr *ins, Py_ssize_t item) noexcept nogil:
    cdef Py_ssize_t nblk = ins.n[9], nrb = ins.n[10], n = item // (nblk * nrb)
    _conv_rows_block(ins, <const float *>ins.p[0] + n * ins.n[8], n, (item // nrb) % nblk,
                     (item % nrb) * ins.n[11])


cdef inline void _conv_rows_block(const Instr *ins, const float *x, Py_ssize_t n,
                                  Py_ssize_t blk, Py_ssize_t r0) noexcept nogil:
    """Rows [r0, r0 + rows) of channel block blk of image n from its padded planes x (p[1..5]:
    tap offsets, packed weights, bias or NULL, out, row clip table or NULL)."""
    cdef Py_ssize_t nsteps = ins.n[1], ocb = ins.n[3], OC = ins.n[4], OH = ins.n[5]
    cdef Py_ssize_t OW = ins.n[6], rows = ins.n[11]
    cdef const float *bias = <const float *>ins.p[3]
    conv_direct_f32_rows(x, ins.n[7], <const Py_ssize_t *>ins.p[1], nsteps, ins.n[2],
                         <const float *>ins.p[2] + blk * nsteps * ocb, ocb,
                         min(ocb, OC - blk * ocb), bias + blk * ocb if bias != NULL else NULL,
                         <int>ins.n[12], <float *>ins.p[4] + (n * OC + blk * ocb) * OH * OW,
                         OH, OW, r0, min(OH, r0 + rows), <const Py_ssize_t *>ins.p[5])


cdef void _conv_rows_images(const Instr *ins, int n_threads) noexcept nogil:
    """conv._direct_per_image's loop: each item pads one image into its thread's buffer, then
    convolves it. p: buffers (n[22] threads' worth), then as conv_rows (tap offsets, packed
    weights, bias, out, row clips), src, ReLU mask or NULL. n: as conv_rows (image: floats per
    padded image), then C, H, W, Hp, top, left, sh, sw, the buffers' thread count."""
    cdef int nt = _threads(ins.n[13], CONV_MIN_PARALLEL, n_threads)
    parallel_for(_conv_rows_images_task, <void *>ins, ins.n[0], min(nt, <int>ins.n[22]))


cdef void _conv_rows_images_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                 int worker) noexcept nogil:
    cdef const Instr *ins = <const Instr *>args
    cdef const float *src = <const float *>ins.p[6]
    cdef const float *mask = <const float *>ins.p[7]
    cdef Py_ssize_t C = ins.n[14], HW = ins.n[15] * ins.n[16], image = ins.n[8]
    cdef Py_ssize_t plane = ins.n[20] * ins.n[21] * ins.n[17] * ins.n[7], n, c, blk, rb
    cdef Py_ssize_t oimg = ins.n[4] * ins.n[5] * ins.n[6]
    cdef float *x = <float *>ins.p[0] + worker * image
    cdef const float *out = <const float *>ins.p[4]
    for n in range(begin, end):
        for c in range(C):
            conv_pad_phases_f32(src + (n * C + c) * HW, ins.n[15], ins.n[16],
                                mask + (n * C + c) * HW if mask != NULL else NULL,
                                x + c * plane, ins.n[17], ins.n[7], ins.n[18], ins.n[19],
                                ins.n[20], ins.n[21])
        for blk in range(ins.n[9]):
            for rb in range(ins.n[10]):
                if n + 1 < end:  # as conv._per_image_task
                    conv_prefetch_image(src + (n + 1) * C * HW,
                                        mask + (n + 1) * C * HW if mask != NULL else NULL,
                                        out + (n + 1) * oimg, C * HW, oimg,
                                        blk * ins.n[10] + rb, ins.n[9] * ins.n[10])
                _conv_rows_block(ins, x, n, blk, rb * ins.n[11])


cdef void _conv_dx_images(const Instr *ins, int n_threads) noexcept nogil:
    """conv._images_backward_input's loop. p: grad_out, ReLU mask or NULL, packed weights
    (pack_conv_weights, ocb conv.DX_IMAGES_CB, flipped), grad_x, scratch of n[12] items.
    n: N, C, OC, OH, OW, KH, KW, H, W, ph, pw, scratch floats per item, items (threads), work."""
    cdef int nt = _threads(ins.n[13], CONV_MIN_PARALLEL, n_threads)
    parallel_for(_conv_dx_images_task, <void *>ins, (ins.n[0] + 15) // 16,
                 min(nt, <int>ins.n[12]))


cdef void _conv_dx_images_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                               int worker) noexcept nogil:
    """Groups [begin, end) of 16 images."""
    cdef const Instr *ins = <const Instr *>args
    cdef Py_ssize_t grp
    for grp in range(begin, end):
        conv_dx_images_group(<const float *>ins.p[0], <const float *>ins.p[1],
                             <const float *>ins.p[2], <float *>ins.p[3],
                             <float *>ins.p[4] + worker * ins.n[11], grp * 16,
                             min(16, ins.n[0] - grp * 16), ins.n[1], ins.n[2], ins.n[3],
                             ins.n[4], ins.n[5], ins.n[6], ins.n[7], ins.n[8], ins.n[9],
                             ins.n[10])


cdef void _conv_pixels(const Instr *ins, int n_threads) noexcept nogil:
    """conv._packed_conv's loop. p: padded input, tap offsets, packed weights, bias or NULL,
    out. n: N, nsteps, nb, ocb, OC, OH, OW, Wp, sh, sw, image, nblk, npb, pix, relu, row_kw
    (see conv._packed_conv; n has no room left for the work, N * OC * OH * OW * nsteps)."""
    cdef Py_ssize_t N = ins.n[0], nblk = ins.n[11], npb = ins.n[12], item
    cdef int nt = _threads(N * ins.n[4] * ins.n[5] * ins.n[6] * ins.n[1], CONV_MIN_PARALLEL,
                           n_threads)
    parallel_for(_conv_pixels_item_task, <void *>ins, N * nblk * npb, nt)


cdef void _conv_pixels_item_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                 int worker) noexcept nogil:
    cdef Py_ssize_t item
    for item in range(begin, end):
        _conv_pixels_item(<const Instr *>args, item)


cdef inline void _conv_pixels_item(const Instr *ins, Py_ssize_t item) noexcept nogil:
    cdef Py_ssize_t nsteps = ins.n[1], ocb = ins.n[3], OC = ins.n[4], OH = ins.n[5]
    cdef Py_ssize_t OW = ins.n[6], nblk = ins.n[11], npb = ins.n[12], pix = ins.n[13]
    cdef Py_ssize_t n = item // (nblk * npb), blk = (item // npb) % nblk
    cdef Py_ssize_t p0 = (item % npb) * pix
    cdef const float *bias = <const float *>ins.p[3]
    conv_packed_f32_pixels(<const float *>ins.p[0] + n * ins.n[10], ins.n[7], ins.n[8],
                           ins.n[9], <const Py_ssize_t *>ins.p[1], nsteps,
                           <const float *>ins.p[2] + blk * nsteps * ocb, ins.n[2],
                           min(ocb, OC - blk * ocb), bias + blk * ocb if bias != NULL else NULL,
                           <int>ins.n[14], <float *>ins.p[4] + (n * OC + blk * ocb) * OH * OW,
                           OH, OW, p0, min(OH * OW, p0 + pix), ins.n[15])


cdef void _max_pool_2x2(const Instr *ins, int n_threads) noexcept nogil:
    """pool.max_pool2d_2x2_forward's loop. p: x, out, window codes (uint8) or NULL.
    n: blocks (N * C * OH), H, W, OH, OW, work (input elements)."""
    parallel_for(_max_pool_2x2_task, <void *>ins, (ins.n[0] + 31) // 32,
                 _threads(ins.n[5], POOL_MIN_PARALLEL, n_threads))


cdef void _max_pool_2x2_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                             int worker) noexcept nogil:
    """Groups [begin, end) of 32 output rows."""
    cdef const Instr *ins = <const Instr *>args
    max_pool_2x2_f32(<const float *>ins.p[0], <float *>ins.p[1], <unsigned char *>ins.p[2],
                     ins.n[1], ins.n[2], ins.n[3], ins.n[4], begin * 32, min(end * 32, ins.n[0]))


cdef void _linear(const Instr *ins, int n_threads) noexcept nogil:
    """ops.matmul.Linear: out (M, N) = x (M, K) @ w (N, K)^T, then `out += bias` and
    `max(out, 0)` elementwise as NumPy does them. p: x, w, bias or NULL, out. n: M, N, K, relu."""
    cdef Py_ssize_t M = ins.n[0], N = ins.n[1], K = ins.n[2], i, j
    cdef const float *bias = <const float *>ins.p[2]
    cdef float *out = <float *>ins.p[3]
    gemm(False, True, M, N, K, ONE, <const float *>ins.p[0], K, <const float *>ins.p[1], K,
         ZERO, out, N, n_threads)
    if bias != NULL:
        for i in range(M):
            for j in range(N):
                out[i * N + j] = out[i * N + j] + bias[j]
    if ins.n[3]:
        _relu(out, out, M * N)


cdef inline void _relu(const float *x, float *out, Py_ssize_t count) noexcept nogil:
    """np.maximum(x, 0): NaN propagates; x == 0 (either sign) gives x, as NumPy's loop."""
    cdef Py_ssize_t i
    cdef float v
    for i in range(count):
        v = x[i]
        out[i] = 0 if v < 0 else v


cdef void _add(const Instr *ins, int n_threads) noexcept nogil:
    """ops.elementwise.Add on operands of one shape: out = a + b, then max(out, 0) when relu
    (the fused ReLU epilogue, as _relu: NaN stays NaN). out may be a or b.
    p: a, b, out. n: count, relu."""
    parallel_for(_add_task, <void *>ins, (ins.n[0] + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK,
                 _threads(ins.n[0], ELEMENTWISE_MIN_PARALLEL, n_threads))


cdef void _add_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Blocks [begin, end) of ELEMENTWISE_BLOCK elements."""
    cdef const Instr *ins = <const Instr *>args
    cdef Py_ssize_t start = begin * ELEMENTWISE_BLOCK
    cdef Py_ssize_t count = min(end * ELEMENTWISE_BLOCK, ins.n[0]) - start, i
    cdef const float *a = <const float *>ins.p[0] + start
    cdef const float *b = <const float *>ins.p[1] + start
    cdef float *out = <float *>ins.p[2] + start
    if ins.n[1]:
        for i in range(count):
            out[i] = a[i] + b[i]
        _relu(out, out, count)
    else:
        for i in range(count):
            out[i] = a[i] + b[i]


cdef void _add_backward(const Instr *ins, int n_threads) noexcept nogil:
    """ops.elementwise.Add.backward on operands of its output's shape: each needed input
    gradient is g, masked as ReLU's backward (relu_backward) where the fused ReLU's output is
    given. p: g, relu_out or NULL, grad_a or NULL, grad_b or NULL. n: count."""
    parallel_for(_add_backward_task, <void *>ins,
                 (ins.n[0] + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK,
                 _threads(ins.n[0], ELEMENTWISE_MIN_PARALLEL, n_threads))


cdef void _add_backward_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                             int worker) noexcept nogil:
    cdef const Instr *ins = <const Instr *>args
    cdef Py_ssize_t start = begin * ELEMENTWISE_BLOCK
    cdef Py_ssize_t count = min(end * ELEMENTWISE_BLOCK, ins.n[0]) - start
    cdef const float *g = <const float *>ins.p[0] + start
    cdef float *first = <float *>(ins.p[2] if ins.p[2] != NULL else ins.p[3]) + start
    if ins.p[1] != NULL:
        _relu_backward(g, <const float *>ins.p[1] + start, first, count)
    else:
        memcpy(first, g, count * sizeof(float))
    if ins.p[2] != NULL and ins.p[3] != NULL:
        memcpy(<float *>ins.p[3] + start, first, count * sizeof(float))


cdef void _linear_backward(const Instr *ins, int n_threads) noexcept nogil:
    """ops.matmul.Linear.backward: g2 = g masked where relu_out <= 0 (when relu), then
    gx (M, K) = g2 @ w, gw (N, K) = g2^T @ x, gb (N,) = g2.sum(axis=0) (rows added in order).
    p: g, relu_out or NULL, w, x, gx, gw, gb (each NULL when not needed), mask scratch (M, N).
    n: M, N, K."""
    cdef Py_ssize_t M = ins.n[0], N = ins.n[1], K = ins.n[2], i, j
    cdef const float *g = <const float *>ins.p[0]
    cdef const float *relu_out = <const float *>ins.p[1]
    cdef float *gb = <float *>ins.p[6]
    cdef float *masked = <float *>ins.p[7]
    if relu_out != NULL:
        _relu_backward(g, relu_out, masked, M * N)
        g = masked
    if ins.p[4] != NULL:
        gemm(False, False, M, K, N, ONE, g, N, <const float *>ins.p[2], K, ZERO,
             <float *>ins.p[4], K, n_threads)
    if ins.p[5] != NULL:
        gemm(True, False, N, K, M, ONE, g, N, <const float *>ins.p[3], K, ZERO,
             <float *>ins.p[5], K, n_threads)
    if gb != NULL:
        for j in range(N):
            gb[j] = g[j]
        for i in range(1, M):
            for j in range(N):
                gb[j] = gb[j] + g[i * N + j]


cdef inline void _relu_backward(const float *g, const float *out, float *gx,
                                Py_ssize_t count) noexcept nogil:
    """np.where(out <= 0, 0, g): zero where the output is <= 0, the gradient elsewhere (NaN
    outputs pass it)."""
    cdef Py_ssize_t i
    cdef float v
    for i in range(count):
        v = g[i]  # read unconditionally, so that the select compiles to a vector blend
        gx[i] = 0 if out[i] <= 0 else v


cdef void _max_pool_backward(const Instr *ins, int n_threads) noexcept nogil:
    """pool.max_pool2d_2x2_backward's loop, from the codes the program's forward instruction
    wrote. p: grad_out, codes (uint8), grad_x. n: as the forward's."""
    parallel_for(_max_pool_backward_task, <void *>ins, (ins.n[0] + 31) // 32,
                 _threads(ins.n[5], POOL_MIN_PARALLEL, n_threads))


cdef void _max_pool_backward_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                  int worker) noexcept nogil:
    """Groups [begin, end) of 32 output rows."""
    cdef const Instr *ins = <const Instr *>args
    max_unpool_2x2_f32(<const float *>ins.p[0], <const unsigned char *>ins.p[1],
                       <float *>ins.p[2], ins.n[1], ins.n[2], ins.n[3], ins.n[4], begin * 32,
                       min(end * 32, ins.n[0]))


cdef double _pairwise_sum(const double *a, Py_ssize_t n) noexcept nogil:
    """NumPy's pairwise summation of a contiguous float64 array (what `a.sum()` computes):
    eight partial sums per block of at most 128, blocks split in halves."""
    cdef Py_ssize_t i, n2
    cdef double r[8]
    cdef double res
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n <= 128:
        for i in range(8):
            r[i] = a[i]
        i = 8
        while i < n - (n % 8):
            r[0] += a[i]
            r[1] += a[i + 1]
            r[2] += a[i + 2]
            r[3] += a[i + 3]
            r[4] += a[i + 4]
            r[5] += a[i + 5]
            r[6] += a[i + 6]
            r[7] += a[i + 7]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += a[i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(a, n2) + _pairwise_sum(a + n2, n - n2)


cdef int _softmax_cross_entropy(const Instr *ins) noexcept nogil:
    """ops.loss.CrossEntropy's fused path (loss.softmax_cross_entropy_forward, then the row
    losses summed as NumPy sums them, / N for the mean, cast to float32). p: scores (N, C),
    target (N,) int64, prob (N, C), row_loss (N,) float64, loss (float32 scalar).
    n: N, C, mean. Returns 1 + the first row whose target is outside [0, C), else 0."""
    cdef Py_ssize_t n = ins.n[0], c = ins.n[1], i, j
    cdef const float *scores = <const float *>ins.p[0]
    cdef const int64_t *target = <const int64_t *>ins.p[1]
    cdef float *prob = <float *>ins.p[2]
    cdef double *row_loss = <double *>ins.p[3]
    cdef int64_t t
    cdef double top, total, lse
    for i in range(n):
        if target[i] < 0 or target[i] >= c:
            return <int>min(i + 1, 1 << 30)
    for i in range(n):
        t = target[i]
        top = scores[i * c]
        for j in range(1, c):
            if scores[i * c + j] > top:
                top = scores[i * c + j]
        total = 0.0
        for j in range(c):
            total = total + exp(scores[i * c + j] - top)
        lse = top + log(total)
        for j in range(c):
            prob[i * c + j] = <float>exp(scores[i * c + j] - lse)
        row_loss[i] = lse - scores[i * c + t]
    total = _pairwise_sum(row_loss, n)
    if ins.n[2]:
        total /= n
    (<float *>ins.p[4])[0] = <float>total
    return 0


cdef void _softmax_cross_entropy_backward(const Instr *ins) noexcept nogil:
    """loss.softmax_cross_entropy_backward with the upstream gradient g (a float32 scalar):
    scale = g / N for the mean (else g), grad = scale * prob, minus scale at each target.
    p: g, prob, target, grad. n: N, C, mean."""
    cdef Py_ssize_t n = ins.n[0], c = ins.n[1], i, j
    cdef double scale = (<const float *>ins.p[0])[0]
    cdef const float *prob = <const float *>ins.p[1]
    cdef const int64_t *target = <const int64_t *>ins.p[2]
    cdef float *grad = <float *>ins.p[3]
    cdef float s
    if ins.n[2]:
        scale = scale / n
    s = <float>scale
    for i in range(n):
        for j in range(c):
            grad[i * c + j] = s * prob[i * c + j]
        grad[i * c + target[i]] = grad[i * c + target[i]] - s


cdef void _conv_dw_direct(const Instr *ins, int n_threads) noexcept nogil:
    """conv._direct_backward_weight: partial weight (and bias) gradients per chunk of images,
    each chunk padded by the worker that reduces it. p: x, grad, mask or NULL, partial_w,
    partial_b, scratch (`workers` x conv.direct_dw_scratch floats). n: N, C, H, W, OC, OH, OW,
    KH, KW, sh, sw, ph, pw, dh, dw, workers (runs on at most that many threads)."""
    cdef conv_dw_rows_run job
    memset(&job.a, 0, sizeof(job.a))
    job.a.x = <const float *>ins.p[0]
    job.a.g = <const float *>ins.p[1]
    job.a.mask = <const float *>ins.p[2]
    job.a.partial_w = <float *>ins.p[3]
    job.a.partial_b = <float *>ins.p[4]
    job.scratch = <float *>ins.p[5]
    job.a.N, job.a.C, job.a.H, job.a.W = ins.n[0], ins.n[1], ins.n[2], ins.n[3]
    job.a.OC, job.a.OH, job.a.OW, job.a.KH = ins.n[4], ins.n[5], ins.n[6], ins.n[7]
    job.a.KW, job.a.sh, job.a.sw, job.a.ph = ins.n[8], ins.n[9], ins.n[10], ins.n[11]
    job.a.pw, job.a.dh, job.a.dw = ins.n[12], ins.n[13], ins.n[14]
    conv_dw_rows_plan(&job.a, job.a.mask != NULL)
    cdef int nt = _threads(job.a.N * job.a.OC * job.a.OH * job.a.OW * job.a.C * job.a.KH
                           * job.a.KW, CONV_MIN_PARALLEL, min(n_threads, <int>ins.n[15]))
    parallel_for(conv_dw_rows_task, &job, conv_dw_rows_items(&job.a, nt), nt)


cdef void _conv_transpose_grad(const Instr *ins, int n_threads) noexcept nogil:
    """conv._packed_backward_weight's first loop: each image's gradient transposed to
    [P][ocp] (ReLU-masked). p: grad (N, OC, P), mask or NULL, gt. n: N, OC, P, ocp, work."""
    cdef Py_ssize_t N = ins.n[0], n
    cdef int nt = _threads(ins.n[4], CONV_MIN_PARALLEL, n_threads)
    parallel_for(_transpose_one_task, <void *>ins, N, nt)


cdef void _transpose_one_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                              int worker) noexcept nogil:
    cdef Py_ssize_t item
    for item in range(begin, end):
        _transpose_one(<const Instr *>args, item)


cdef inline void _transpose_one(const Instr *ins, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t OC = ins.n[1], P = ins.n[2], ocp = ins.n[3]
    cdef const float *mask = <const float *>ins.p[1]
    conv_transpose_grad_f32(<const float *>ins.p[0] + n * OC * P,
                            mask + n * OC * P if mask != NULL else NULL, OC, P, ocp,
                            <float *>ins.p[2] + n * P * ocp)


cdef void _conv_dw_packed(const Instr *ins, int n_threads) noexcept nogil:
    """conv._packed_backward_weight's second loop. p: padded x, gt, pixel offsets, partial_w,
    partial_b. n: N, C, OC, KH, KW, dh, dw, Wp, plane, P, ocp, chunk, work."""
    cdef Py_ssize_t N = ins.n[0], C = ins.n[1], KH = ins.n[3]
    cdef Py_ssize_t nchunks = (N + ins.n[11] - 1) // ins.n[11], item
    cdef int nt = _threads(ins.n[12], CONV_MIN_PARALLEL, n_threads)
    parallel_for(_conv_dw_packed_item_task, <void *>ins, nchunks * C * KH, nt)


cdef void _conv_dw_packed_item_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                    int worker) noexcept nogil:
    cdef Py_ssize_t item
    for item in range(begin, end):
        _conv_dw_packed_item(<const Instr *>args, item)


cdef inline void _conv_dw_packed_item(const Instr *ins, Py_ssize_t item) noexcept nogil:
    cdef Py_ssize_t N = ins.n[0], C = ins.n[1], OC = ins.n[2], KH = ins.n[3], KW = ins.n[4]
    cdef Py_ssize_t dh = ins.n[5], Wp = ins.n[7], plane = ins.n[8], P = ins.n[9]
    cdef Py_ssize_t ocp = ins.n[10], chunk_size = ins.n[11], T = KH * KW
    cdef Py_ssize_t chunk = item // (C * KH), c = (item // KH) % C, kh = item % KH
    cdef Py_ssize_t n0 = chunk * chunk_size, nimg = min(chunk_size, N - n0)
    cdef const float *gt = <const float *>ins.p[1] + n0 * P * ocp
    conv_dw_packed_f32(<const float *>ins.p[0] + (n0 * C + c) * plane + kh * dh * Wp, C * plane,
                       gt, P * ocp, nimg, <const Py_ssize_t *>ins.p[2], P, ocp, KW, ins.n[6],
                       <float *>ins.p[3] + chunk * OC * C * T + c * T + kh * KW, C * T, OC)
    if c == 0 and kh == 0:
        conv_db_packed_f32(gt, P * ocp, nimg, P, ocp, <float *>ins.p[4] + chunk * OC, OC)


cdef void _sum_chunks(const Instr *ins) noexcept nogil:
    """conv._sum_chunks: out = partial[0] + partial[1] + ... in chunk order.
    p: partial (chunks, size), out. n: chunks, size."""
    cdef Py_ssize_t chunks = ins.n[0], size = ins.n[1], k, i
    cdef const float *partial = <const float *>ins.p[0]
    cdef float *out = <float *>ins.p[1]
    memcpy(out, partial, size * sizeof(float))
    for k in range(1, chunks):
        for i in range(size):
            out[i] = out[i] + partial[k * size + i]


def dw_tb(Py_ssize_t kw) -> int:
    """kw taps per tile of the weight-gradient kernels."""
    return conv_dw_f32_tb(kw)


cdef int _execute(const Instr *ins, int n_threads) noexcept nogil:
    """Run one instruction; nonzero: it found its inputs invalid (nothing after it runs)."""
    cdef int op = ins.op
    cdef Py_ssize_t i
    if op == OP_CONV_ROWS:
        _conv_rows(ins, n_threads)
    elif op == OP_CONV_ROWS_IMAGES:
        _conv_rows_images(ins, n_threads)
    elif op == OP_CONV_PIXELS:
        _conv_pixels(ins, n_threads)
    elif op == OP_CONV_DX_IMAGES:
        _conv_dx_images(ins, n_threads)
    elif op == OP_PAD_PLANES:
        _pad_planes(ins, n_threads)
    elif op == OP_PACK_CONV_WEIGHTS:
        _pack_conv_weights(ins)
    elif op == OP_MAX_POOL_2X2:
        _max_pool_2x2(ins, n_threads)
    elif op == OP_LINEAR:
        _linear(ins, n_threads)
    elif op == OP_RELU:
        _relu(<const float *>ins.p[0], <float *>ins.p[1], ins.n[0])
    elif op == OP_ADD:
        _add(ins, n_threads)
    elif op == OP_ADD_BACKWARD:
        _add_backward(ins, n_threads)
    elif op == OP_COPY:
        memcpy(ins.p[0], ins.p[1], ins.n[0])
    elif op == OP_LINEAR_BACKWARD:
        _linear_backward(ins, n_threads)
    elif op == OP_RELU_BACKWARD:
        _relu_backward(<const float *>ins.p[0], <const float *>ins.p[1], <float *>ins.p[2],
                       ins.n[0])
    elif op == OP_MAX_POOL_BACKWARD:
        _max_pool_backward(ins, n_threads)
    elif op == OP_SOFTMAX_CROSS_ENTROPY:
        return _softmax_cross_entropy(ins)
    elif op == OP_SOFTMAX_CROSS_ENTROPY_BACKWARD:
        _softmax_cross_entropy_backward(ins)
    elif op == OP_CONV_DW_DIRECT:
        _conv_dw_direct(ins, n_threads)
    elif op == OP_CONV_TRANSPOSE_GRAD:
        _conv_transpose_grad(ins, n_threads)
    elif op == OP_CONV_DW_PACKED:
        _conv_dw_packed(ins, n_threads)
    elif op == OP_SUM_CHUNKS:
        _sum_chunks(ins)
    return 0


cdef bint _acquire_pair(dst, src, Py_buffer *d, Py_buffer *v, int flags) except -1:
    """Both C-contiguous buffers (dst writable) with `flags` into d and v, True; or False with
    neither held."""
    try:
        PyObject_GetBuffer(src, v, PyBUF_C_CONTIGUOUS | flags)
    except (BufferError, ValueError):
        return False
    try:
        PyObject_GetBuffer(dst, d, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | flags)
    except (BufferError, ValueError):
        PyBuffer_Release(v)
        return False
    return True


def copy_into(dst, src) -> bool:
    """memcpy of src into dst when both are C-contiguous buffers of the same byte size (the
    caller matched their shapes and dtypes), without NumPy's dispatch; False otherwise."""
    cdef Py_buffer d, v
    if not _acquire_pair(dst, src, &d, &v, 0):
        return False
    cdef bint same = d.len == v.len
    if same:
        memcpy(d.buf, v.buf, d.len)
    PyBuffer_Release(&d)
    PyBuffer_Release(&v)
    return same


def add_into(dst, src) -> bool:
    """dst += src when both are C-contiguous float32 buffers of the same shape (a parameter's
    .grad and the program's gradient for it), without NumPy's dispatch: 10 in-place adds
    were half the Python time of a LeNet training call; False otherwise (nothing written)."""
    cdef Py_buffer d, v
    cdef Py_ssize_t i, n
    cdef float *out
    cdef const float *add
    if not _acquire_pair(dst, src, &d, &v, PyBUF_FORMAT):
        return False
    cdef bint same = (d.ndim == v.ndim and d.len == v.len and d.itemsize == 4
                      and v.itemsize == 4 and d.format[0] == b"f" and d.format[1] == 0
                      and v.format[0] == b"f" and v.format[1] == 0)
    if same:
        for i in range(d.ndim):
            same = same and d.shape[i] == v.shape[i]
    if same:
        out, add, n = <float *>d.buf, <const float *>v.buf, d.len // 4
        with nogil:
            for i in range(n):
                out[i] = out[i] + add[i]
    PyBuffer_Release(&d)
    PyBuffer_Release(&v)
    return same


cdef enum:
    # NumPy 2's NPY_MAXDIMS (NumPy 1's is 32): every array's dimensions fit in a Layout.
    MAX_DIMS = 64


# What a bound parameter array looked like when bound: an ndarray keeps its identity through
# `a.shape = ...`, `a.dtype = ...` or `a.resize(..., refcheck=False)`, so the identity check
# alone would miss those.
cdef struct Layout:
    void *data
    int type_num
    int ndim
    Py_ssize_t dims[MAX_DIMS]


cdef bint _layout_of(cnp.ndarray a, Layout *out) noexcept:
    """out := a's layout; False when it has more dimensions than Layout holds."""
    cdef int i, nd = cnp.PyArray_NDIM(a)
    if nd > MAX_DIMS:
        return False
    out.data = cnp.PyArray_DATA(a)
    out.type_num = cnp.PyArray_TYPE(a)
    out.ndim = nd
    for i in range(nd):
        out.dims[i] = cnp.PyArray_DIMS(a)[i]
    return True


cdef inline bint _has_layout(cnp.ndarray a, const Layout *lay) noexcept:
    """a is C-contiguous with the data pointer, dtype and shape `lay` recorded."""
    cdef int i
    if (cnp.PyArray_DATA(a) != lay.data or cnp.PyArray_TYPE(a) != lay.type_num
            or cnp.PyArray_NDIM(a) != lay.ndim or not cnp.PyArray_IS_C_CONTIGUOUS(a)):
        return False
    for i in range(lay.ndim):
        if cnp.PyArray_DIMS(a)[i] != lay.dims[i]:
            return False
    return True


cdef inline bint _same_layout(object a, cnp.ndarray buf) noexcept:
    """a is a C-contiguous ndarray of buf's shape and dtype (exactly an ndarray: a subclass
    may mean something else by its data)."""
    cdef cnp.ndarray arr
    cdef int i, nd
    if type(a) is not cnp.ndarray:
        return False
    arr = <cnp.ndarray>a
    nd = cnp.PyArray_NDIM(buf)
    if cnp.PyArray_NDIM(arr) != nd or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(arr)[i] != cnp.PyArray_DIMS(buf)[i]:
            return False
    return (cnp.PyArray_DESCR(arr) == cnp.PyArray_DESCR(buf)
            or cnp.PyArray_EquivTypes(<cnp.dtype>cnp.PyArray_DESCR(arr),
                                      <cnp.dtype>cnp.PyArray_DESCR(buf)))


cdef Py_ssize_t _address(a) except 0:
    """The data pointer of a C-contiguous ndarray with at least one element."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or a.size == 0:
        raise ValueError("program: a pointer operand must be a non-empty C-contiguous ndarray")
    return a.__array_interface__["data"][0]


cdef class Program:
    """Instructions over arrays it holds. Built by `add` (at lowering time), run by `run`.

    add(opcode, pointers, sizes): pointers are ndarrays (their data pointers are taken and the
    arrays kept alive) or None (NULL); a ("slot", k) entry marks an operand bound later with
    `bind(k, array)` (a parameter the caller re-points when it is replaced).
    """

    cdef Instr *code
    cdef Py_ssize_t n_code, capacity
    cdef list python_nodes
    cdef list keep
    cdef list slot_uses  # slot k -> [(instruction, pointer index)]
    cdef list bound
    cdef Layout *layouts  # slot k's array as bound (valid once bound[k] is not None)
    cdef Py_ssize_t n_unbound
    # For `call` (set by set_io): slot k's parameter tensor, the tensor type inputs must be,
    # the input buffers, and the value list (shared with the lowering: a Python node may put
    # a new array there every run) with the indices of the outputs in it.
    cdef list param_tensors
    cdef object tensor_type
    cdef list input_buffers
    cdef list arrays
    cdef list output_indices

    def __cinit__(self):
        self.code = NULL
        self.layouts = NULL
        self.n_code = self.capacity = self.n_unbound = 0
        self.python_nodes = []
        self.keep = []
        self.slot_uses = []
        self.bound = []
        self.param_tensors = self.input_buffers = None

    def __dealloc__(self):
        PyMem_Free(self.code)
        PyMem_Free(self.layouts)

    def add_slot(self) -> int:
        """A new operand slot (see `bind`); its index."""
        cdef Layout *grown = <Layout *>PyMem_Realloc(
            self.layouts, (len(self.bound) + 1) * sizeof(Layout))
        if grown == NULL:
            raise MemoryError()
        self.layouts = grown
        self.slot_uses.append([])
        self.bound.append(None)
        self.n_unbound += 1
        return len(self.slot_uses) - 1

    def set_io(self, list param_tensors, tensor_type, list input_buffers, list arrays,
               list output_indices) -> None:
        """What `call` reads: slot k's parameter tensor (param_tensors[k]), the type an
        input must have, the buffers inputs are copied into, and the value list with the
        outputs' indices in it."""
        if len(param_tensors) != len(self.bound):
            raise ValueError(f"program: {len(param_tensors)} parameters for "
                             f"{len(self.bound)} slots")
        for buf in input_buffers:
            if type(buf) is not np.ndarray or not buf.flags.c_contiguous:
                raise ValueError("program: an input buffer must be a C-contiguous ndarray")
        self.param_tensors = param_tensors
        self.tensor_type = tensor_type
        self.input_buffers = input_buffers
        self.arrays = arrays
        self.output_indices = output_indices

    def add(self, str opcode, pointers=(), sizes=()) -> int:
        """Append one kernel instruction; its index."""
        cdef Instr *grown
        cdef Instr *ins
        if len(pointers) > MAX_POINTERS or len(sizes) > MAX_SIZES:
            raise ValueError(f"program: {opcode} takes at most {MAX_POINTERS} pointers and "
                             f"{MAX_SIZES} sizes")
        if self.n_code == self.capacity:
            grown = <Instr *>PyMem_Realloc(self.code, (2 * self.capacity + 8) * sizeof(Instr))
            if grown == NULL:
                raise MemoryError()
            self.code = grown
            self.capacity = 2 * self.capacity + 8
        ins = &self.code[self.n_code]
        memset(ins, 0, sizeof(Instr))
        ins.op = OPCODES[opcode]
        for i, a in enumerate(pointers):
            if a is None:
                continue
            if isinstance(a, tuple):
                self.slot_uses[a[1]].append((self.n_code, i))
                continue
            ins.p[i] = <void *>_address(a)
            self.keep.append(a)
        for i, s in enumerate(sizes):
            ins.n[i] = s
        self.n_code += 1
        return self.n_code - 1

    def add_python(self, node) -> int:
        """Append a Python node: `node()` runs with the GIL at this point of the program."""
        index = self.add("python", (), (len(self.python_nodes),))
        self.python_nodes.append(node)
        return index

    def bind(self, Py_ssize_t slot, array) -> None:
        """Point every operand of `slot` at `array`'s data (the caller checked its shape and
        dtype against the ones the program was built for); the array is kept until the next
        bind of that slot."""
        cdef void *address = <void *>_address(array)
        cdef Layout layout
        if not _layout_of(array, &layout):
            raise ValueError(f"program: a parameter operand has more than {MAX_DIMS} dimensions")
        for k, i in self.slot_uses[slot]:
            self.code[<Py_ssize_t>k].p[<Py_ssize_t>i] = address
        if self.bound[slot] is None:
            self.n_unbound -= 1
        self.bound[slot] = array
        self.layouts[slot] = layout

    def bound_to(self, list tensors) -> bint:
        """Whether slot k is bound to tensors[k].data for every slot, and each such array
        still has the data pointer, shape and dtype it had then (no parameter was replaced
        or changed shape since the last bind): one C loop per call in place of a Python
        one."""
        cdef Py_ssize_t k, n = len(self.bound)
        if len(tensors) != n:
            return False
        for k in range(n):
            if not self._slot_holds(k, tensors[k].data):
                return False
        return True

    cdef inline bint _slot_holds(self, Py_ssize_t k, object data) noexcept:
        """Slot k is bound to `data`, which has the layout it was bound with."""
        return data is self.bound[k] and _has_layout(<cnp.ndarray>data, &self.layouts[k])

    cdef object call(self, tuple inputs, int n_threads):
        """One inference call in C: each input a `tensor_type` (not a subclass) whose data is
        a C-contiguous ndarray of its buffer's shape and dtype is copied in; with every
        parameter as last bound (bound_to), the program runs and copies of the outputs are
        returned (a list). None, with nothing run, when any of that does not hold, or after
        a run that an instruction stopped (the caller's Python path then binds, copies, or
        replays: input buffers written here are written again)."""
        cdef Py_ssize_t k, n
        cdef list tensors = self.param_tensors, arrays
        cdef cnp.ndarray buf, a
        if self.input_buffers is None:
            return None  # set_io was not called
        n = len(self.input_buffers)
        if len(inputs) != n:
            return None
        for k in range(n):
            # Exactly the tensor type: its `data` is a slot, so reading it runs no code.
            t = inputs[k]
            if type(t) is not self.tensor_type:
                return None
            data = t.data
            buf = <cnp.ndarray>self.input_buffers[k]
            if not _same_layout(data, buf):
                return None
            a = <cnp.ndarray>data
            memcpy(cnp.PyArray_DATA(buf), cnp.PyArray_DATA(a), cnp.PyArray_NBYTES(buf))
        for k in range(len(self.bound)):
            if not self._slot_holds(k, tensors[k].data):
                return None
        if self._run(n_threads):
            return None
        arrays = self.arrays
        outputs = []
        for k in self.output_indices:
            out = arrays[k]
            outputs.append(cnp.PyArray_NewCopy(<cnp.ndarray>out, cnp.NPY_CORDER)
                           if type(out) is cnp.ndarray else out.copy())
        return outputs

    def run(self, int n_threads) -> int:
        """Run every instruction in order; the GIL is released between Python nodes.
        Returns 0, or (when an instruction found its inputs invalid, e.g. a class target out
        of range, and the run stopped there) 1 + that instruction's index."""
        return self._run(n_threads)

    cdef Py_ssize_t _run(self, int n_threads) except -1:
        cdef Py_ssize_t k = 0, n = self.n_code
        cdef int status = 0
        if self.n_unbound:
            raise RuntimeError(f"program: {self.n_unbound} operand slots were never bound")
        while k < n:
            if self.code[k].op == OP_PYTHON:
                self.python_nodes[self.code[k].n[0]]()
                k += 1
                continue
            with nogil:
                while k < n and self.code[k].op != OP_PYTHON:
                    status = _execute(&self.code[k], n_threads)
                    if status:
                        break
                    k += 1
            if status:
                return k + 1
        return 0

    def run_timed(self, int n_threads) -> list:
        """`run`, one instruction at a time: the seconds each took (for benchmarks: the time
        outside the instructions is the executor's and the caller's)."""
        import time

        clock = time.perf_counter
        cdef Py_ssize_t k
        cdef int status
        seconds = []
        if self.n_unbound:
            raise RuntimeError(f"program: {self.n_unbound} operand slots were never bound")
        for k in range(self.n_code):
            start = clock()
            if self.code[k].op == OP_PYTHON:
                self.python_nodes[self.code[k].n[0]]()
            else:
                with nogil:
                    status = _execute(&self.code[k], n_threads)
                if status:
                    raise ValueError(f"program: instruction {k} found its inputs invalid")
            seconds.append(clock() - start)
        return seconds

    def __len__(self) -> int:
        return self.n_code

    def opcodes(self) -> list:
        """The opcode name of every instruction, in order."""
        names = {v: k for k, v in OPCODES.items()}
        return [names[self.code[k].op] for k in range(self.n_code)]


cdef class InferenceCall:
    """A compiled inference graph's whole call in C, for the common case: an idle program
    from the graph's pool (list.pop and append are atomic; with none idle, a concurrent call
    holds it and this one takes the Python path, which builds another), lowered for the conv
    algorithm still chosen, whose `call` takes the inputs; the first output wrapped as the
    result. None when any of that does not hold: the caller then takes its Python path.

    idle: the graph's pool of Lowered (each with .program and .conv_algorithm); backend: the
    module whose `algorithm` selects the conv kernels; num_threads(): the thread count to run
    at; wrap(array, False): the result Tensor."""

    cdef list idle
    cdef object backend, num_threads, wrap

    def __init__(self, list idle, backend, num_threads, wrap):
        self.idle = idle
        self.backend = backend
        self.num_threads = num_threads
        self.wrap = wrap

    def __call__(self, tuple inputs):
        cdef list idle = self.idle
        if not idle:
            return None
        lowered = idle.pop()
        try:
            if lowered.conv_algorithm != self.backend.algorithm:
                return None
            outputs = (<Program?>lowered.program).call(inputs, self.num_threads())
        finally:
            idle.append(lowered)
        return None if outputs is None else self.wrap(outputs[0], False)
