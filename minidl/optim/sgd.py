"""Stochastic gradient descent with momentum, as torch.optim.SGD."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl._kernels import optim as _optim
from minidl.optim.optimizer import Optimizer, implementation_options
from minidl.threads import get_num_threads


class SGD(Optimizer):
    """PyTorch's update (Sutskever et al. momentum; the lectures' `v = mu * v - lr * dx` up to
    where lr is applied):

        g = grad + weight_decay * p
        b = g                                  on the first step
        b = momentum * b + (1 - dampening) * g afterwards
        g = g + momentum * b if nesterov else b     (when momentum != 0)
        p = p - lr * g
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        implementation_options("SGD", differentiable)
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov,
                                  "maximize": maximize, "foreach": foreach,
                                  "differentiable": differentiable, "fused": fused})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum and zero dampening")

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        momentum = group["momentum"]
        first = False
        buf = state.get("momentum_buffer")
        if momentum != 0 and buf is None:
            buf = state["momentum_buffer"] = np.empty_like(p.data)
            first = True
        # The kernel updates a flat C-contiguous view in place; a strided p.data (a view set
        # by the user) is updated through a contiguous copy written back.
        data = p.data if p.data.flags.c_contiguous else np.ascontiguousarray(p.data)
        flat = data.reshape(-1)
        _optim.sgd_update(flat, np.ascontiguousarray(grad).reshape(-1),
                          flat if buf is None else buf.reshape(-1), group["lr"], momentum,
                          group["dampening"], group["weight_decay"], group["nesterov"], first,
                          get_num_threads())
        if data is not p.data:
            p.data[...] = data
