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


class aminmax(NamedTuple):  # noqa: N801
    min: Any
    max: Any


class mode(NamedTuple):  # noqa: N801
    values: Any
    indices: Any
