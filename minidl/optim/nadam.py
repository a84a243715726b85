"""NAdam, as torch.optim.NAdam."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.adam import check_betas_and_eps
from minidl.optim.optimizer import Optimizer, implementation_options, scalar_dtype


class NAdam(Optimizer):
    """Adam with Nesterov momentum (Dozat, 2016), PyTorch's form with its momentum schedule
    mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)):

        g = grad + weight_decay * p          (decoupled: p *= 1 - lr * weight_decay instead)
        m = m + (1 - beta1) * (g - m);   v = beta2 * v + (1 - beta2) * g * g
        d = sqrt(v / (1 - beta2^t)) + eps
        p = p - lr (1 - mu_t) / (1 - prod mu) * g / d - lr mu_{t+1} / (1 - prod mu * mu_{t+1}) * m / d

    The running product of mu is kept in float32 (float64 if that is the default dtype), as
    PyTorch keeps it.
    """

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        implementation_options("NAdam", differentiable)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "momentum_decay": momentum_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "maximize": maximize, "foreach": foreach,
                                  "capturable": capturable, "differentiable": differentiable})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        check_betas_and_eps(type(self).__name__, group)
        if not 0.0 <= group["momentum_decay"]:
            raise ValueError(f"Invalid momentum_decay value: {group['momentum_decay']}")

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, beta1, beta2 = group["lr"], *group["betas"]
        if not state:
            state["step"] = 0
            state["mu_product"] = scalar_dtype()(1.0)
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        step, decay = state["step"], group["momentum_decay"]
        if group["weight_decay"] != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1 - lr * group["weight_decay"]
            else:
                grad = grad + group["weight_decay"] * p.data
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * decay))
        real = type(state["mu_product"])
        state["mu_product"] = real(state["mu_product"] * real(mu))
        product = float(state["mu_product"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        denom = np.sqrt(exp_avg_sq / (1 - beta2**step)) + group["eps"]
        p.data += (-lr * (1.0 - mu) / (1.0 - product)) * grad / denom
        p.data += (-lr * mu_next / (1.0 - product * mu_next)) * exp_avg / denom
