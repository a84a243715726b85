"""RAdam, as torch.optim.RAdam."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.adam import check_betas_and_eps
from minidl.optim.optimizer import Optimizer, implementation_options


class RAdam(Optimizer):
    """Rectified Adam (Liu et al., 2020), PyTorch's form: Adam's moments; while the variance
    estimate is unreliable (rho_t <= 5) the step is SGD with momentum on the bias-corrected
    m, afterwards Adam's step times the rectification term r_t:

        rho_inf = 2 / (1 - beta2) - 1,  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        p = p - lr * m / (1 - beta1^t) * [sqrt(1 - beta2^t) / (sqrt(v) + eps) * r_t]
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, decoupled_weight_decay: bool = False,
                 *, foreach: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False) -> None:
        implementation_options("RAdam", differentiable)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "maximize": maximize,
                                  "foreach": foreach, "capturable": capturable,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "differentiable": differentiable})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        check_betas_and_eps(type(self).__name__, group)

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, beta1, beta2 = group["lr"], *group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        step = state["step"]
        if group["weight_decay"] != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1 - lr * group["weight_decay"]
            else:
                grad = grad + group["weight_decay"] * p.data
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        correction2 = 1 - beta2**step
        corrected = exp_avg / (1 - beta1**step)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / correction2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                             / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            adaptive = correction2**0.5 / (np.sqrt(exp_avg_sq) + group["eps"])
            p.data -= corrected * lr * adaptive * rect
        else:
            p.data -= corrected * lr
