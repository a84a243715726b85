"""Adadelta, as torch.optim.Adadelta (the optimizer of PyTorch's MNIST example)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.optimizer import Optimizer, implementation_options


class Adadelta(Optimizer):
    """Zeiler (2012), PyTorch's form (lr scales the step; 1.0 is the paper's method):

        g = grad + weight_decay * p
        v = rho * v + (1 - rho) * g^2
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta^2
        p = p - lr * delta
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9,
                 eps: float = 1e-6, weight_decay: float = 0, foreach: bool | None = None, *,
                 capturable: bool = False, maximize: bool = False,
                 differentiable: bool = False) -> None:
        implementation_options("Adadelta", differentiable)
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps,
                                  "weight_decay": weight_decay, "maximize": maximize,
                                  "capturable": capturable, "foreach": foreach,
                                  "differentiable": differentiable})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Adadelta: invalid rho {group['rho']} (must be in [0, 1])")
        if group["eps"] < 0:
            raise ValueError(f"Adadelta: invalid eps {group['eps']}")

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        g, delta = self.scratch(p, 2)
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
            state["acc_delta"] = np.zeros_like(p.data)
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        np.copyto(g, grad)
        if group["weight_decay"] != 0:
            g += group["weight_decay"] * p.data
        v, u = state["square_avg"], state["acc_delta"]
        v *= rho
        v += (1 - rho) * g * g
        np.add(u, eps, out=delta)
        np.sqrt(delta, out=delta)
        delta /= np.sqrt(v + eps)
        delta *= g
        u *= rho
        u += (1 - rho) * delta * delta
        delta *= group["lr"]
        p.data -= delta
