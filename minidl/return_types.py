"""Named tuples returned by reductions that give values and indices, as torch.return_types.

`values, indices = x.max(dim=1)`; `x.max(1).indices`; they unpack and index like tuples.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class max(NamedTuple):  # noqa: N801 (PyTorch's type names)
    values: Any
    indices: Any


class min(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


class sort(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


class topk(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


class median(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


class kthvalue(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


class cummax(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


class cummin(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


class nanmedian(NamedTuple):  # noqa: N801
    values: Any
    indices: Any


# The linalg decompositions' results (torch.return_types.linalg_* and the older torch.qr,
# torch.svd, torch.slogdet).
class linalg_slogdet(NamedTuple):  # noqa: N801
    sign: Any
    logabsdet: Any


class slogdet(NamedTuple):  # noqa: N801
    sign: Any
    logabsdet: Any


class linalg_qr(NamedTuple):  # noqa: N801
    Q: Any
    R: Any


class qr(NamedTuple):  # noqa: N801
    Q: Any
    R: Any


class linalg_eigh(NamedTuple):  # noqa: N801
    eigenvalues: Any
    eigenvectors: Any


class linalg_svd(NamedTuple):  # noqa: N801
    U: Any
    S: Any
    Vh: Any


class svd(NamedTuple):  # noqa: N801
    U: Any
    S: Any
    V: Any


class linalg_lstsq(NamedTuple):  # noqa: N801
    solution: Any
    residuals: Any
    rank: Any
    singular_values: Any


class linalg_lu_factor(NamedTuple):  # noqa: N801
    LU: Any
    pivots: Any


class linalg_lu(NamedTuple):  # noqa: N801
    P: Any
    L: Any
    U: Any


class lu_unpack(NamedTuple):  # noqa: N801
    P: Any
    L: Any
    U: Any


class linalg_lu_factor_ex(NamedTuple):  # noqa: N801
    LU: Any
    pivots: Any
    info: Any


class aminmax(NamedTuple):  # noqa: N801
    min: Any
    max: Any


class mode(NamedTuple):  # noqa: N801
    values: Any
    indices: Any
