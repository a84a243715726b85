"""minidl.linalg and the top-level linalg functions against PyTorch 2.13: values and gradients
in float64 (1e-10) and float32 (1e-4), over batched shapes, with float64 numerical gradient
checks of every differentiable op, and PyTorch's errors."""

import math

import numpy as np
import pytest

import minidl
import minidl.linalg as LA
from minidl.autograd import gradcheck

torch = pytest.importorskip("torch")

DTYPES = [(np.float64, 1e-10), (np.float32, 1e-4)]
BATCHES = [(), (1,), (2, 3)]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _general(shape, seed=0):
    """Random matrices, square ones shifted away from singular."""
    a = _rng(seed).standard_normal(shape)
    if shape[-1] == shape[-2]:
        a = a + shape[-1] * np.eye(shape[-1]) * 0.5
    return a


def _spd(shape, seed=0):
    x = _rng(seed).standard_normal(shape)
    return x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])


def _sym(shape, seed=0):
    x = _rng(seed).standard_normal(shape)
    return x + np.swapaxes(x, -1, -2)


def _close(mine, ref, tol):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    mine = mine.numpy() if isinstance(mine, minidl.Tensor) else np.asarray(mine)
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    assert mine.dtype == ref.dtype, (mine.dtype, ref.dtype)
    scale = max(1.0, float(np.abs(ref).max(initial=0)))
    np.testing.assert_allclose(mine, ref, rtol=tol, atol=tol * scale)


def compare(mine, theirs, arrays, dtype=np.float64, tol=1e-10, grad=True, seed=1):
    """mine(*Tensors) and theirs(*torch tensors) give one tensor each: values and the
    gradients of sum(w * out) for a random w must agree."""
    m_in = [minidl.tensor(a.astype(dtype), requires_grad=grad) for a in arrays]
    t_in = [torch.tensor(a.astype(dtype), requires_grad=grad) for a in arrays]
    m_out, t_out = mine(*m_in), theirs(*t_in)
    _close(m_out, t_out, tol)
    if not grad:
        return
    w = _rng(seed).standard_normal(tuple(t_out.shape))
    (m_out * minidl.tensor(w.astype(dtype))).sum().backward()
    (t_out * torch.tensor(w.astype(dtype))).sum().backward()
    for m, t in zip(m_in, t_in):
        assert t.grad is not None and float(t.grad.abs().max()) > 0
        _close(m.grad, t.grad, tol * 10)


def numeric(fn, *arrays):
    assert gradcheck(fn, [minidl.tensor(a, requires_grad=True) for a in arrays],
                     atol=1e-7, rtol=1e-5)


def test_linalg_is_a_module_attribute():
    assert minidl.linalg is LA
    assert issubclass(LA.LinAlgError, RuntimeError)
    assert sorted(LA.__all__) == LA.__all__


# -- determinants ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
def test_det_slogdet_logdet(dtype, tol, batch):
    a = _general(batch + (4, 4))
    compare(LA.det, torch.linalg.det, [a], dtype, tol)
    compare(lambda x: LA.slogdet(x).logabsdet, lambda x: torch.linalg.slogdet(x).logabsdet,
            [a], dtype, tol)
    compare(lambda x: LA.slogdet(x).sign, lambda x: torch.linalg.slogdet(x).sign, [a], dtype,
            tol, grad=False)
    compare(minidl.logdet, torch.logdet, [_spd(batch + (3, 3))], dtype, tol)


def test_det_gradient_of_an_exactly_singular_matrix_is_zero_as_torch():
    a = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])
    x, t = minidl.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    LA.det(x).backward()
    torch.linalg.det(t).backward()
    assert not t.grad.any() and not x.grad.numpy().any()


def test_det_of_empty_matrices_and_batches():
    assert LA.det(minidl.zeros(0, 0)).item() == 1.0
    assert LA.det(minidl.zeros(2, 0, 0)).tolist() == [1.0, 1.0]
    assert tuple(LA.det(minidl.zeros(0, 3, 3)).shape) == (0,)
    sign, logabsdet = LA.slogdet(minidl.zeros(0, 0))
    assert (sign.item(), logabsdet.item()) == (1.0, 0.0)
    assert LA.slogdet(minidl.zeros(2, 2)).logabsdet.item() == -math.inf
    assert tuple(LA.inv(minidl.zeros(0, 0)).shape) == (0, 0)


def test_logdet_negative_determinant_is_nan():
    a = np.diag([-1.0, 2.0])
    assert math.isnan(minidl.logdet(minidl.tensor(a)).item())
    assert math.isnan(torch.logdet(torch.tensor(a)).item())


def test_determinant_gradchecks():
    numeric(LA.det, _general((2, 3, 3)))
    numeric(lambda x: LA.slogdet(x).logabsdet, _general((2, 3, 3)))


# -- inverses and solves ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
def test_inv_and_inverse(dtype, tol, batch):
    a = _general(batch + (4, 4))
    compare(LA.inv, torch.linalg.inv, [a], dtype, tol)
    compare(minidl.inverse, torch.inverse, [a], dtype, tol)
    compare(lambda x: x.inverse(), lambda x: x.inverse(), [a], dtype, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3)), ((4, 3, 3), (3,)),
    ((2, 1, 3, 3), (5, 3, 2)), ((3, 3), (2, 3, 1)), ((1, 3, 3), (0, 3, 2)),
])
def test_solve_broadcasting(dtype, tol, a_shape, b_shape):
    a, b = _general(a_shape), _rng(3).standard_normal(b_shape)
    compare(LA.solve, torch.linalg.solve, [a, b], dtype, tol, grad=0 not in b_shape)


def test_solve_left_false():
    a, b = _general((2, 3, 3)), _rng(3).standard_normal((2, 4, 3))
    compare(lambda x, y: LA.solve(x, y, left=False),
            lambda x, y: torch.linalg.solve(x, y, left=False), [a, b])


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 4, 4), (2, 1, 4, 3)])
def test_pinv(dtype, tol, shape):
    a = _general(shape)
    compare(LA.pinv, torch.linalg.pinv, [a], dtype, tol)
    compare(minidl.pinverse, torch.pinverse, [a], dtype, tol)


def test_pinv_hermitian_tolerances_and_rank():
    s = _sym((2, 4, 4))
    compare(lambda x: LA.pinv(x, hermitian=True), lambda x: torch.linalg.pinv(x, hermitian=True),
            [s])
    low = np.diag([3.0, 1.0, 1e-3, 0.0])
    for kwargs in ({}, {"atol": 0.01}, {"rtol": 0.1}, {"atol": 0.5, "rtol": 0.0}):
        compare(lambda x, kw=kwargs: LA.pinv(x, **kw),
                lambda x, kw=kwargs: torch.linalg.pinv(x, **kw), [low], grad=False)
        for hermitian in (False, True):
            mine = LA.matrix_rank(minidl.tensor(low), hermitian=hermitian, **kwargs)
            theirs = torch.linalg.matrix_rank(torch.tensor(low), hermitian=hermitian, **kwargs)
            assert mine.dtype == minidl.int64 and mine.item() == theirs.item()
    a = _general((2, 3, 5))
    assert LA.matrix_rank(minidl.tensor(a)).tolist() == [3, 3]


@pytest.mark.parametrize("a_shape,b_shape", [((5, 3), (5, 2)), ((5, 3), (5,)),
                                             ((2, 6, 4), (2, 6, 3))])
def test_lstsq(a_shape, b_shape):
    a, b = _general(a_shape), _rng(4).standard_normal(b_shape)
    compare(lambda x, y: LA.lstsq(x, y).solution, lambda x, y: torch.linalg.lstsq(x, y).solution,
            [a, b])
    mine = LA.lstsq(minidl.tensor(a), minidl.tensor(b))
    theirs = torch.linalg.lstsq(torch.tensor(a), torch.tensor(b))
    assert mine.rank.tolist() == theirs.rank.tolist()
    assert tuple(mine.residuals.shape) == tuple(theirs.residuals.shape) == (0,)
    assert tuple(mine.singular_values.shape) == tuple(theirs.singular_values.shape)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, -1, -2])
def test_matrix_power(n):
    a = _general((2, 3, 3)) * 0.5
    compare(lambda x: LA.matrix_power(x, n), lambda x: torch.linalg.matrix_power(x, n), [a],
            grad=n != 0)
    compare(lambda x: x.matrix_power(n), lambda x: x.matrix_power(n), [a], grad=False)
    ints = np.arange(9).reshape(3, 3)
    if n >= 0:
        mine = LA.matrix_power(minidl.tensor(ints), n)
        assert mine.dtype == minidl.int64
        assert mine.tolist() == torch.linalg.matrix_power(torch.tensor(ints), n).tolist()


def test_tensorinv_tensorsolve():
    a = _general((6, 6)).reshape(6, 2, 3)
    compare(lambda x: LA.tensorinv(x, ind=1), lambda x: torch.linalg.tensorinv(x, ind=1), [a])
    a4 = _general((6, 6)).reshape(2, 3, 6)
    b = _rng(2).standard_normal((2, 3))
    compare(LA.tensorsolve, torch.linalg.tensorsolve, [a4, b])
    a5 = np.moveaxis(_general((6, 6)).reshape(6, 2, 3), 0, 2)
    compare(lambda x, y: LA.tensorsolve(x, y.reshape(6), dims=(0, 1)),
            lambda x, y: torch.linalg.tensorsolve(x, y.reshape(6), dims=(0, 1)), [a5, b])


def test_cholesky_solve_and_inverse():
    spd = _spd((2, 3, 3))
    lower = np.linalg.cholesky(spd)
    b = _rng(5).standard_normal((2, 3, 2))
    for upper in (False, True):
        factor = np.swapaxes(lower, -1, -2) if upper else lower
        compare(lambda x, y, u=upper: minidl.cholesky_solve(x, y, u),
                lambda x, y, u=upper: torch.cholesky_solve(x, y, u), [b, factor])
        compare(lambda x, u=upper: minidl.cholesky_inverse(x, u),
                lambda x, u=upper: torch.cholesky_inverse(x, u), [factor[0]])


def test_solver_gradchecks():
    a, b = _general((2, 3, 3)), _rng(1).standard_normal((2, 3, 2))
    numeric(LA.inv, a)
    numeric(LA.solve, a, b)
    numeric(lambda x, y: LA.solve(x, y[0, :, 0]), a, b)
    numeric(LA.pinv, _general((4, 3)))
    numeric(lambda x: LA.pinv(x + x.mT, hermitian=True), _general((3, 3)))
    numeric(lambda x, y: LA.lstsq(x, y).solution, _general((5, 3)), _general((5, 2)))
    numeric(lambda x: LA.matrix_power(x, -3), a)


# -- decompositions ---------------------------------------------------------------------------
def _signs_fixed(q, axis=-2):
    """Columns (axis=-2) or rows (axis=-1) of q scaled so their largest entry is positive:
    the decompositions' vectors are defined up to sign."""
    arr = q.detach().numpy() if isinstance(q, torch.Tensor) else q.numpy()
    idx = np.expand_dims(np.abs(arr).argmax(axis=axis), axis)
    return arr * np.sign(np.take_along_axis(arr, idx, axis=axis))


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("upper", [False, True])
def test_cholesky(dtype, tol, batch, upper):
    a = _spd(batch + (4, 4))
    compare(lambda x: LA.cholesky(x, upper=upper), lambda x: torch.linalg.cholesky(x, upper=upper),
            [a], dtype, tol)
    compare(lambda x: minidl.cholesky(x, upper), lambda x: torch.cholesky(x, upper), [a], dtype,
            tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (2, 5, 3), (2, 1, 3, 4)])
@pytest.mark.parametrize("mode", ["reduced", "complete", "r"])
def test_qr(dtype, tol, shape, mode):
    a = _general(shape)
    grad = mode != "r" and not (mode == "complete" and shape[-2] > shape[-1])
    mine, theirs = LA.qr(minidl.tensor(a.astype(dtype)), mode), torch.linalg.qr(
        torch.tensor(a.astype(dtype)), mode)
    assert tuple(mine.Q.shape) == tuple(theirs.Q.shape)
    _close(mine.R, theirs.R, tol)
    if mode != "r":
        _close(mine.Q, theirs.Q, tol)
    w = _rng(7).standard_normal(shape[:-1] + (min(shape[-2:]),))
    compare(lambda x: LA.qr(x, mode).R, lambda x: torch.linalg.qr(x, mode).R, [a], dtype, tol,
            grad=grad)
    if grad:
        compare(lambda x: LA.qr(x, mode).Q[..., :w.shape[-1]] * minidl.tensor(w.astype(dtype))
                + LA.qr(x, mode).R.sum(),
                lambda x: torch.linalg.qr(x, mode).Q[..., :w.shape[-1]]
                * torch.tensor(w.astype(dtype)) + torch.linalg.qr(x, mode).R.sum(),
                [a], dtype, tol)


def test_qr_backward_errors_as_torch():
    x = minidl.randn(4, 3, dtype=minidl.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="mode='r'"):
        LA.qr(x, mode="r").R.sum().backward()
    with pytest.raises(RuntimeError, match="not differentiable when mode='complete'"):
        LA.qr(x, mode="complete").R.sum().backward()
    with pytest.raises(RuntimeError, match="unrecognized mode"):
        LA.qr(x, mode="full")


def test_torch_qr_some():
    a = _general((5, 3))
    for some in (True, False):
        mine = minidl.qr(minidl.tensor(a), some)
        theirs = torch.qr(torch.tensor(a), some)
        _close(mine.Q, theirs.Q, 1e-10)
        _close(mine.R, theirs.R, 1e-10)
        _close(minidl.tensor(a).qr(some).R, theirs.R, 1e-10)


def _eigh_loss(module, values, vectors, w):
    """Gauge invariant: the eigenvalues and the squared eigenvectors."""
    return (values * w[0]).sum() + (vectors * vectors * w[1:]).sum()


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("uplo", ["L", "U"])
def test_eigh(dtype, tol, batch, uplo):
    a = _rng(2).standard_normal(batch + (4, 4))  # not symmetric: UPLO picks the triangle
    w = _rng(3).standard_normal((5, 4))
    m_in = minidl.tensor(a.astype(dtype), requires_grad=True)
    t_in = torch.tensor(a.astype(dtype), requires_grad=True)
    mv, mq = LA.eigh(m_in, UPLO=uplo)
    tv, tq = torch.linalg.eigh(t_in, UPLO=uplo)
    _close(mv, tv, tol)
    _close(_signs_fixed(mq), _signs_fixed(tq), tol * 10)
    _eigh_loss(minidl, mv, mq, minidl.tensor(w.astype(dtype))).backward()
    _eigh_loss(torch, tv, tq, torch.tensor(w.astype(dtype))).backward()
    _close(m_in.grad, t_in.grad, tol * 100)
    compare(lambda x: LA.eigvalsh(x, uplo), lambda x: torch.linalg.eigvalsh(x, uplo), [a], dtype,
            tol)


def _svd_loss(u, s, vh, w):
    """Gauge invariant: S, U diag(S) Vh's product terms and the squared vectors."""
    k = s.shape[-1]
    return ((s * w[0, :k]).sum() + (u[..., :k] * u[..., :k] * w[1, :u.shape[-2], None]).sum()
            + (vh[..., :k, :] * vh[..., :k, :] * w[2, None, :vh.shape[-1]]).sum())


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (2, 5, 3), (2, 1, 3, 4)])
@pytest.mark.parametrize("full", [False, True])
def test_svd(dtype, tol, shape, full):
    a = _rng(5).standard_normal(shape)
    w = _rng(6).standard_normal((3, 5))
    m_in = minidl.tensor(a.astype(dtype), requires_grad=True)
    t_in = torch.tensor(a.astype(dtype), requires_grad=True)
    mine, theirs = LA.svd(m_in, full_matrices=full), torch.linalg.svd(t_in, full_matrices=full)
    for m, t in zip(mine, theirs):
        assert tuple(m.shape) == tuple(t.shape)
    k = min(shape[-2:])
    _close(mine.S, theirs.S, tol)
    _close(_signs_fixed(mine.U[..., :k]), _signs_fixed(theirs.U[..., :k]), tol * 10)
    _close(_signs_fixed(mine.Vh[..., :k, :], -1), _signs_fixed(theirs.Vh[..., :k, :], -1),
           tol * 10)
    _svd_loss(*mine, minidl.tensor(w.astype(dtype))).backward()
    _svd_loss(*theirs, torch.tensor(w.astype(dtype))).backward()
    _close(m_in.grad, t_in.grad, tol * 100)
    compare(LA.svdvals, torch.linalg.svdvals, [a], dtype, tol)


def test_torch_svd_returns_v():
    a = _rng(1).standard_normal((2, 5, 3))
    for some in (True, False):
        u, s, v = minidl.svd(minidl.tensor(a), some)
        tu, ts, tv = torch.svd(torch.tensor(a), some)
        assert tuple(v.shape) == tuple(tv.shape) and tuple(u.shape) == tuple(tu.shape)
        _close(s, ts, 1e-10)
        _close(_signs_fixed(v[..., :3]), _signs_fixed(tv[..., :3]), 1e-10)
    u, s, v = minidl.tensor(a).svd(compute_uv=False)
    tu, ts, tv = torch.svd(torch.tensor(a), compute_uv=False)
    assert tuple(u.shape) == tuple(tu.shape) and not u.numpy().any()
    assert tuple(v.shape) == tuple(tv.shape)


def test_decompositions_of_empty_matrices():
    assert [tuple(t.shape) for t in LA.svd(minidl.zeros(0, 3))] == [(0, 0), (0,), (3, 3)]
    assert [tuple(t.shape) for t in LA.svd(minidl.zeros(2, 0, 3), False)] == [
        (2, 0, 0), (2, 0), (2, 0, 3)]
    assert [tuple(t.shape) for t in LA.qr(minidl.zeros(3, 0))] == [(3, 0), (0, 0)]
    assert [tuple(t.shape) for t in LA.eigh(minidl.zeros(0, 0))] == [(0,), (0, 0)]
    assert tuple(LA.cholesky(minidl.zeros(2, 0, 0)).shape) == (2, 0, 0)


def test_decomposition_gradchecks():
    sym = _rng(0).standard_normal((2, 3, 3))
    numeric(lambda x: LA.cholesky(x @ x.mT + 3 * minidl.eye(3, dtype=minidl.float64)), sym)
    numeric(lambda x: LA.cholesky(x @ x.mT + 3 * minidl.eye(3, dtype=minidl.float64),
                                  upper=True), sym)
    for shape in [(4, 3), (3, 4), (3, 3)]:
        a = _general(shape)
        numeric(lambda x: LA.qr(x).Q, a)
        numeric(lambda x: LA.qr(x).R, a)
        numeric(lambda x: LA.svd(x, full_matrices=False).S, a)
        numeric(lambda x: (lambda u, s, vh: minidl.cat([(u * u).reshape(-1),
                                                        (vh * vh).reshape(-1)]))(
            *LA.svd(x, full_matrices=False)), a)
        numeric(lambda x: (lambda u, s, vh: u @ vh)(*LA.svd(x, full_matrices=False)), a)
        numeric(LA.svdvals, a)
    numeric(lambda x: LA.eigh(x + x.mT).eigenvalues, sym)
    numeric(lambda x: (lambda v, q: q * q)(*LA.eigh(x + x.mT)), sym)
    numeric(lambda x: LA.eigvalsh(x + x.mT, "U"), sym)


# -- norms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("ord_", [2, 1, 3.5, 0.5, math.inf, -math.inf, 0])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (-1, False), ((0, 2), True), (1, True)])
def test_vector_norm(dtype, tol, ord_, dim, keepdim):
    x = _rng(1).standard_normal((2, 3, 4))
    compare(lambda t: LA.vector_norm(t, ord_, dim, keepdim),
            lambda t: torch.linalg.vector_norm(t, ord_, dim, keepdim), [x], dtype, tol,
            grad=ord_ != 0)


def test_vector_norm_gradient_at_zero_and_dtype():
    z = np.zeros((2, 3))
    for ord_ in (2, 1, 3.0):
        x = minidl.tensor(z, requires_grad=True)
        LA.vector_norm(x, ord_).backward()
        t = torch.tensor(z, requires_grad=True)
        torch.linalg.vector_norm(t, ord_).backward()
        _close(x.grad, t.grad, 1e-12)
    x = minidl.randn(3)
    assert LA.vector_norm(x, dtype=minidl.float64).dtype == minidl.float64


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("ord_", ["fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf])
@pytest.mark.parametrize("dim,keepdim", [((-2, -1), False), ((0, 2), True), ((2, 0), False)])
def test_matrix_norm(dtype, tol, ord_, dim, keepdim):
    x = _rng(2).standard_normal((3, 4, 5))
    compare(lambda t: LA.matrix_norm(t, ord_, dim, keepdim),
            lambda t: torch.linalg.matrix_norm(t, ord_, dim, keepdim), [x], dtype, tol)


@pytest.mark.parametrize("args", [
    {}, {"ord": -1}, {"ord": "nuc"}, {"ord": 2, "dim": (0, 1)}, {"dim": 1}, {"dim": (1,)},
    {"ord": math.inf, "dim": 0, "keepdim": True},
])
def test_norm_dispatch(args):
    x = _rng(3).standard_normal((3, 4))
    v = _rng(3).standard_normal(4)
    compare(lambda t: LA.norm(t, **args), lambda t: torch.linalg.norm(t, **args), [x])
    if "dim" not in args and args.get("ord") != "nuc":
        compare(lambda t: LA.norm(t, **args), lambda t: torch.linalg.norm(t, **args), [v])
    compare(lambda t: LA.norm(t, 3), lambda t: torch.linalg.norm(t, 3), [v])


@pytest.mark.parametrize("p", [None, 2, -2, 1, -1, math.inf, -math.inf, "fro", "nuc"])
def test_cond(p):
    a = _general((2, 3, 3))
    # PyTorch's backward of cond raises for the orders other than 2 (an in-place write)
    compare(lambda t: LA.cond(t, p), lambda t: torch.linalg.cond(t, p), [a],
            grad=p in (None, 2, -2))
    singular = np.zeros((2, 2))
    if p not in (None, 2, -2, "nuc"):
        assert LA.cond(minidl.tensor(singular), p).item() == math.inf
        assert torch.linalg.cond(torch.tensor(singular), p).item() == math.inf


def test_norm_gradchecks():
    x = _rng(4).standard_normal((3, 4))
    for ord_ in ("fro", "nuc", 2, -2, 1, math.inf):
        numeric(lambda t, o=ord_: LA.matrix_norm(t, o), x)
    numeric(lambda t: LA.vector_norm(t, 3.0, dim=1), x)
    numeric(LA.cond, _general((3, 3)))


# -- products ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_cross_vecdot_multi_dot_diagonal(dtype, tol):
    a, b = _rng(1).standard_normal((2, 3, 4)), _rng(2).standard_normal((1, 3, 4))
    compare(lambda x, y: LA.cross(x, y, dim=1), lambda x, y: torch.linalg.cross(x, y, dim=1),
            [a, b], dtype, tol)
    compare(LA.vecdot, torch.linalg.vecdot, [a, b], dtype, tol)
    mats = [_rng(i).standard_normal(s) for i, s in enumerate([(3,), (3, 4), (4, 2), (2,)])]
    compare(lambda *t: LA.multi_dot(t), lambda *t: torch.linalg.multi_dot(t), mats, dtype, tol)
    compare(lambda *t: LA.multi_dot(t), lambda *t: torch.linalg.multi_dot(t), mats[1:3], dtype,
            tol)
    for kwargs in ({}, {"offset": 1}, {"offset": -1, "dim1": 0, "dim2": 2}):
        compare(lambda x, kw=kwargs: LA.diagonal(x, **kw),
                lambda x, kw=kwargs: torch.linalg.diagonal(x, **kw), [a], dtype, tol)
    compare(lambda x: x.diagonal(1), lambda x: x.diagonal(1), [a], dtype, tol)
    compare(lambda x: minidl.diagonal(x, 0, 2, 1), lambda x: torch.diagonal(x, 0, 2, 1), [a],
            dtype, tol)
    assert LA.matmul is minidl.matmul
    ints = np.arange(6).reshape(2, 3)
    assert LA.cross(minidl.tensor(ints), minidl.tensor(ints[::-1].copy())).tolist() == \
        torch.linalg.cross(torch.tensor(ints), torch.tensor(ints[::-1].copy())).tolist()


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("shape,scale", [((3, 3), 0.3), ((2, 4, 4), 1.0), ((1, 3, 3), 8.0),
                                         ((2, 2), 50.0)])
def test_matrix_exp(dtype, tol, shape, scale):
    a = _rng(3).standard_normal(shape) * scale
    compare(LA.matrix_exp, torch.linalg.matrix_exp, [a], dtype, tol * max(1.0, scale))
    compare(minidl.matrix_exp, torch.matrix_exp, [a], dtype, tol * max(1.0, scale))


def test_product_gradchecks():
    a, b = _rng(1).standard_normal((2, 3)), _rng(2).standard_normal((2, 3))
    numeric(LA.cross, a, b)
    numeric(LA.vecdot, a, b)
    numeric(lambda x, y: LA.multi_dot([x, y.mT, x]), a, b)
    numeric(lambda x: LA.diagonal(x, offset=1, dim1=1, dim2=0), a)
    numeric(LA.matrix_exp, _rng(3).standard_normal((2, 3, 3)))
    numeric(LA.matrix_exp, _rng(3).standard_normal((3, 3)) * 6)


# -- errors -----------------------------------------------------------------------------------
def _same_error(mine, theirs, match=None):
    with pytest.raises(Exception) as t_err:
        theirs()
    with pytest.raises(type(t_err.value).__mro__[0] if not isinstance(t_err.value, RuntimeError)
                       else RuntimeError, match=match) as m_err:
        mine()
    return m_err.value, t_err.value


@pytest.mark.parametrize("name", ["det", "inv", "slogdet", "cholesky", "qr", "svd", "svdvals",
                                  "matrix_norm", "vector_norm", "norm", "matrix_exp", "cond",
                                  "pinv", "matrix_rank"])
def test_integer_inputs_raise_runtime_error(name):
    ints = np.ones((3, 3), np.int64)
    _same_error(lambda: getattr(LA, name)(minidl.tensor(ints)),
                lambda: getattr(torch.linalg, name)(torch.tensor(ints)))


def test_integer_eigh_raises_not_implemented():
    ints = np.ones((3, 3), np.int64)
    for name in ("eigh", "eigvalsh"):
        with pytest.raises(NotImplementedError, match="Long"):
            getattr(LA, name)(minidl.tensor(ints))
        with pytest.raises(NotImplementedError):
            getattr(torch.linalg, name)(torch.tensor(ints))


@pytest.mark.parametrize("name", ["det", "inv", "slogdet", "cholesky", "eigh", "matrix_exp"])
def test_non_square_raises(name):
    a = np.ones((2, 3))
    mine, theirs = _same_error(lambda: getattr(LA, name)(minidl.tensor(a)),
                               lambda: getattr(torch.linalg, name)(torch.tensor(a)))
    assert str(mine) == str(theirs)


def test_singular_and_not_positive_definite_messages_equal_torch():
    cases = [
        (lambda m: m.linalg.inv(m.zeros(2, 2)), None),
        (lambda m: m.linalg.inv(m.zeros(3, 2, 2)), None),
        (lambda m: m.linalg.cholesky(-m.eye(3)), None),
        (lambda m: m.linalg.cholesky(m.tensor([[1.0, 2.0], [2.0, 1.0]])), None),
        (lambda m: m.linalg.solve(m.zeros(2, 2), m.ones(2)), None),
        (lambda m: m.linalg.matrix_power(m.zeros(2, 2), -1), None),
    ]
    for case, _ in cases:
        with pytest.raises(LA.LinAlgError) as mine:
            case(minidl)
        with pytest.raises(torch.linalg.LinAlgError) as theirs:
            case(torch)
        assert str(mine.value) == str(theirs.value)
    assert issubclass(LA.LinAlgError, RuntimeError)


def test_shape_and_argument_errors():
    x = minidl.randn(3, 3)
    with pytest.raises(RuntimeError, match="Incompatible shapes"):
        LA.solve(x, minidl.randn(2, 3))
    with pytest.raises(RuntimeError, match="Order 3 not supported"):
        LA.matrix_norm(x, 3)
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        LA.matrix_norm(minidl.randn(3))
    with pytest.raises(TypeError, match="must be Number"):
        LA.vector_norm(x, "fro")
    with pytest.raises(RuntimeError, match="must be 1D or 2D"):
        LA.norm(minidl.randn(2, 2, 2), 2)
    with pytest.raises(RuntimeError, match="must have length 3"):
        LA.cross(minidl.randn(2), minidl.randn(2))
    with pytest.raises(RuntimeError, match="same dtype"):
        LA.vecdot(minidl.randn(3), minidl.randn(3, dtype=minidl.float64))
    with pytest.raises(RuntimeError, match="at least 2 tensors"):
        LA.multi_dot([x])
    with pytest.raises(RuntimeError, match="UPLO"):
        LA.eigh(x, "X")
    for name in ("eig", "eigvals"):
        with pytest.raises(NotImplementedError, match="complex"):
            getattr(LA, name)(x)


# -- LU and triangular solves -----------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3), (2, 4, 4), (2, 1, 3, 5), (0, 3, 3)])
def test_lu_factor_and_lu(dtype, tol, shape):
    a = _rng(8).standard_normal(shape)
    grad = 0 not in shape
    compare(lambda x: LA.lu_factor(x).LU, lambda x: torch.linalg.lu_factor(x).LU, [a], dtype,
            tol, grad=grad)
    mine = LA.lu_factor(minidl.tensor(a.astype(dtype)))
    theirs = torch.linalg.lu_factor(torch.tensor(a.astype(dtype)))
    assert mine.pivots.dtype == minidl.int32
    assert mine.pivots.tolist() == theirs.pivots.tolist()
    for part in range(3):
        compare(lambda x, i=part: LA.lu(x)[i], lambda x, i=part: torch.linalg.lu(x)[i], [a],
                dtype, tol, grad=grad and part > 0)
    p, lower, upper = minidl.lu_unpack(*mine)
    tp, tl, tu = torch.lu_unpack(*theirs)
    for m, t in ((p, tp), (lower, tl), (upper, tu)):
        _close(m, t, tol)


def test_lu_solve_and_lu_errors():
    a, b = _general((2, 3, 3)), _rng(9).standard_normal((2, 3, 2))
    for left, adjoint in ((True, False), (True, True), (False, False)):
        bb = np.swapaxes(b, -1, -2) if not left else b
        kwargs = {"left": left, "adjoint": adjoint}
        compare(lambda x, y, kw=kwargs: LA.lu_solve(*LA.lu_factor(x), y, **kw),
                lambda x, y, kw=kwargs: torch.linalg.lu_solve(*torch.linalg.lu_factor(x), y,
                                                              **kw),
                [a, bb])
    compare(lambda x, y: minidl.lu_solve(y, *minidl.linalg.lu_factor(x)),
            lambda x, y: torch.lu_solve(y, *torch.linalg.lu_factor(x)), [a, b])
    zeros = np.zeros((3, 2, 2))
    with pytest.raises(RuntimeError) as mine:
        LA.lu_factor(minidl.tensor(zeros))
    with pytest.raises(RuntimeError) as theirs:
        torch.linalg.lu_factor(torch.tensor(zeros))
    assert str(mine.value) == str(theirs.value)
    m_ex, t_ex = LA.lu_factor_ex(minidl.tensor(zeros)), torch.linalg.lu_factor_ex(
        torch.tensor(zeros))
    assert m_ex.info.tolist() == t_ex.info.tolist() and m_ex.info.dtype == minidl.int32
    with pytest.warns(UserWarning, match="torch.lu is deprecated"):
        lu_data, pivots, info = minidl.lu(minidl.tensor(zeros[0]), get_infos=True)
    assert info.item() == 1 and pivots.tolist() == [1, 2]


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize("unitriangular", [False, True])
def test_solve_triangular(upper, left, unitriangular):
    a = _general((2, 4, 4))
    b = _rng(2).standard_normal((2, 4, 3) if left else (2, 3, 4))
    compare(lambda x, y: LA.solve_triangular(x, y, upper=upper, left=left,
                                             unitriangular=unitriangular),
            lambda x, y: torch.linalg.solve_triangular(x, y, upper=upper, left=left,
                                                       unitriangular=unitriangular), [a, b])


def test_vander():
    x = _rng(1).standard_normal((2, 3))
    compare(LA.vander, torch.linalg.vander, [x])
    compare(lambda t: LA.vander(t, N=5), lambda t: torch.linalg.vander(t, N=5), [x])
    z = np.array([0.0, 2.0])
    compare(LA.vander, torch.linalg.vander, [z])
    with pytest.raises(RuntimeError, match="N must be greater than 1"):
        LA.vander(minidl.tensor([1.0, 2.0]), N=1)


def test_deprecated_functions_warn_as_torch():
    from minidl.linalg import torch_functions

    torch_functions._warned.clear()
    a = minidl.tensor(_spd((3, 3)))
    with pytest.warns(UserWarning, match="torch.cholesky is deprecated"):
        minidl.cholesky(a)
    with pytest.warns(UserWarning, match="torch.qr is deprecated"):
        minidl.qr(a)


def test_lu_gradchecks():
    for shape in [(3, 3), (3, 4), (4, 3)]:
        numeric(lambda x: LA.lu_factor(x).LU, _rng(8).standard_normal(shape))
        numeric(lambda x: LA.lu(x).L, _rng(8).standard_normal(shape))
    a, b = _general((3, 3)), _rng(2).standard_normal((3, 2))
    numeric(lambda x, y: LA.lu_solve(*LA.lu_factor(x), y), a, b)
    numeric(lambda x, y: LA.solve_triangular(x, y, upper=True, unitriangular=True), a, b)
    numeric(LA.vander, _rng(1).standard_normal(3))


@pytest.mark.parametrize("shape", [(0, 3, 3), (2, 0, 0), (0, 0)])
@pytest.mark.parametrize("name", ["det", "inv", "cholesky", "eigvalsh", "svdvals", "pinv",
                                  "matrix_exp", "matrix_norm", "norm", "matrix_rank", "qr", "eigh",
                                  "svd", "slogdet", "lu_factor", "lu", "cond"])
def test_empty_batches_and_matrices_have_torch_shapes(shape, name):
    a = np.broadcast_to(np.eye(shape[-1]), shape).copy()
    mine, theirs = getattr(LA, name)(minidl.tensor(a)), getattr(torch.linalg, name)(
        torch.tensor(a))
    if isinstance(theirs, tuple):
        assert [tuple(m.shape) for m in mine] == [tuple(t.shape) for t in theirs]
    else:
        _close(mine, theirs, 0)


def test_dtype_mismatch_messages_equal_torch():
    a32, a64 = np.eye(3, dtype=np.float32), np.ones(3)
    for call in (lambda m: m.linalg.solve(m.tensor(a32), m.tensor(a64)),
                 lambda m: m.linalg.vecdot(m.tensor(a32[0]), m.tensor(a64))):
        with pytest.raises(RuntimeError) as m_err:
            call(minidl)
        with pytest.raises(RuntimeError) as t_err:
            call(torch)
        assert str(m_err.value) == str(t_err.value)


def test_norm_dtype_rules_equal_torch():
    x = np.ones((2, 3))
    for call in (lambda m: m.linalg.vector_norm(m.tensor(x), dtype=m.float32),
                 lambda m: m.linalg.matrix_norm(m.tensor(x), "nuc", dtype=m.float32),
                 lambda m: m.linalg.norm(m.tensor(x), dtype=m.float32),
                 lambda m: m.linalg.vector_norm(m.tensor(x), dtype=m.int64)):
        with pytest.raises(RuntimeError) as m_err:
            call(minidl)
        with pytest.raises(RuntimeError) as t_err:
            call(torch)
        assert str(m_err.value) == str(t_err.value)
    widened = LA.matrix_norm(minidl.tensor(x.astype(np.float32)), dtype=minidl.float64)
    assert widened.dtype == minidl.float64


def test_torch_cross_default_dim_is_the_first_of_size_3():
    from minidl.linalg import torch_functions

    torch_functions._warned.clear()
    a, b = _rng(1).standard_normal((3, 2, 3)), _rng(2).standard_normal((3, 2, 3))
    with pytest.warns(UserWarning, match="without specifying the dim"):
        compare(minidl.cross, torch.cross, [a, b])
    compare(lambda x, y: x.cross(y, dim=2), lambda x, y: x.cross(y, dim=2), [a, b])


@pytest.mark.parametrize("kwargs", [{"ord": "fro", "dim": 1}, {"ord": 2, "dim": (0, 1, 2)},
                                    {"ord": "nuc"}, {"ord": 1, "dim": (0, 0)},
                                    {"ord": 3, "dim": (1, 2)}])
def test_norm_argument_errors_equal_torch(kwargs):
    x = np.ones((2, 3, 4))
    with pytest.raises(RuntimeError) as m_err:
        LA.norm(minidl.tensor(x), **kwargs)
    with pytest.raises(RuntimeError) as t_err:
        torch.linalg.norm(torch.tensor(x), **kwargs)
    assert str(m_err.value) == str(t_err.value)
