"""RMSprop, as torch.optim.RMSprop."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.optimizer import Optimizer, implementation_options


class RMSprop(Optimizer):
    """Hinton's RMSprop (Lecture 6e), PyTorch's variant (eps added outside the square root):

        g = grad + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        a = mean of g as m = m + (1 - alpha) * (g - m); v' = v - m * m     (centered)
        d = sqrt(v') + eps
        b = momentum * b + g / d; p = p - lr * b    (momentum > 0)
        p = p - lr * g / d                          (otherwise)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, capturable: bool = False, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False) -> None:
        implementation_options("RMSprop", differentiable)
        super().__init__(params, {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                                  "centered": centered, "weight_decay": weight_decay,
                                  "capturable": capturable, "foreach": foreach,
                                  "maximize": maximize, "differentiable": differentiable})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        if not 0 <= group["alpha"] or group["momentum"] < 0 or group["eps"] < 0:
            raise ValueError(
                f"RMSprop: invalid alpha {group['alpha']}, momentum {group['momentum']} "
                f"or eps {group['eps']}"
            )

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        weight_decay, momentum = group["weight_decay"], group["momentum"]
        work, avg = self.scratch(p, 2)
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
            if momentum > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        if weight_decay != 0:
            np.multiply(p.data, weight_decay, out=work)
            grad = np.add(grad, work, out=work)
        square_avg = state["square_avg"]
        square_avg *= alpha
        np.multiply(grad, grad, out=avg)
        avg *= 1 - alpha
        square_avg += avg
        if group["centered"]:
            grad_avg = state["grad_avg"]
            np.subtract(grad, grad_avg, out=avg)
            avg *= 1 - alpha
            grad_avg += avg
            np.multiply(grad_avg, grad_avg, out=avg)
            np.subtract(square_avg, avg, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(square_avg, out=avg)
        avg += eps
        if momentum > 0:
            buf = state.setdefault("momentum_buffer", np.zeros_like(p.data))
            buf *= momentum
            buf += np.divide(grad, avg, out=avg)
            p.data -= np.multiply(buf, lr, out=avg)
        else:
            np.divide(grad, avg, out=avg)
            avg *= lr
            p.data -= avg
