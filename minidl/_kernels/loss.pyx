# cython: language_level=3
"""Softmax cross-entropy over (N, C) rows with class-index targets, in one pass per row.

The general NumPy path of minidl.ops.loss.CrossEntropyOp makes about twenty array calls for a
64x10 batch; the common case (no class weights, no label smoothing, no ignored targets) needs
one read of the scores here. Rows are independent and the batch sum runs in row order, so the
result does not depend on the thread count.
"""

from libc.math cimport exp, log
from libc.stdint cimport int64_t
from minidl._kernels.types cimport real


def softmax_cross_entropy_forward(scores, target, prob, row_loss) -> int:
    """prob[i] = softmax(scores[i]); row_loss[i] = -log prob[i, target[i]].
    scores, prob: (N, C) C-contiguous, one float dtype; target: (N,) int64; row_loss: (N,)
    float64. Returns the index of the first target outside [0, C), or -1 when all are valid
    (rows after an invalid one are left unwritten).
    """
    # The specialization picked here, not by a fused def's dispatcher (types.pxd).
    if scores.dtype.itemsize == 4:
        return _forward[float](scores, target, prob, row_loss)
    return _forward[double](scores, target, prob, row_loss)


def softmax_cross_entropy_backward(prob, target, double scale, grad) -> None:
    """grad = scale * (prob - onehot(target)); prob, grad: (N, C); target: (N,) int64.
    Raises ValueError for a target outside [0, C) (nothing is written) or mismatched shapes."""
    cdef Py_ssize_t bad
    if prob.dtype.itemsize == 4:
        bad = _backward[float](prob, target, scale, grad)
    else:
        bad = _backward[double](prob, target, scale, grad)
    if bad >= 0:
        raise ValueError(f"softmax_cross_entropy_backward: target[{bad}] = {target[bad]} is "
                         f"outside [0, {prob.shape[1]})")


cdef int _check_shapes(str op, Py_ssize_t n, Py_ssize_t c, Py_ssize_t nt, Py_ssize_t n2,
                       Py_ssize_t c2) except -1:
    if nt != n or n2 != n or c2 != c:
        raise ValueError(f"{op}: shapes do not match: scores ({n}, {c}), target ({nt},), "
                         f"output ({n2}, {c2})")
    return 0


cdef Py_ssize_t _forward(const real[:, ::1] scores, const int64_t[::1] target,
                         real[:, ::1] prob, double[::1] row_loss) except -2:
    cdef Py_ssize_t n = scores.shape[0], c = scores.shape[1], i, j, bad = -1
    cdef int64_t t
    cdef double top, total, lse
    _check_shapes("softmax_cross_entropy_forward", n, c, target.shape[0], prob.shape[0],
                  prob.shape[1])
    _check_shapes("softmax_cross_entropy_forward", n, c, row_loss.shape[0], n, c)
    with nogil:
        for i in range(n):
            t = target[i]
            if t < 0 or t >= c:
                bad = i
                break
            top = scores[i, 0]
            for j in range(1, c):
                if scores[i, j] > top:
                    top = scores[i, j]
            total = 0.0
            for j in range(c):
                total = total + exp(scores[i, j] - top)
            lse = top + log(total)
            for j in range(c):
                prob[i, j] = <real>exp(scores[i, j] - lse)
            row_loss[i] = lse - scores[i, t]
    return bad


cdef Py_ssize_t _backward(const real[:, ::1] prob, const int64_t[::1] target, double scale,
                          real[:, ::1] grad) except -2:
    """The first row whose target is outside [0, C) (then nothing is written), else -1."""
    cdef Py_ssize_t n = prob.shape[0], c = prob.shape[1], i, j
    cdef real s = <real>scale
    _check_shapes("softmax_cross_entropy_backward", n, c, target.shape[0], grad.shape[0],
                  grad.shape[1])
    with nogil:
        for i in range(n):
            if target[i] < 0 or target[i] >= c:
                return i
        for i in range(n):
            for j in range(c):
                grad[i, j] = s * prob[i, j]
            grad[i, target[i]] = grad[i, target[i]] - s
    return -1
