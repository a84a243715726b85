"""Adam and AdamW, as torch.optim.Adam / AdamW (amsgrad optional)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.optimizer import Optimizer, implementation_options


def check_betas_and_eps(name: str, group: dict) -> None:
    """The Adam family's hyperparameter checks: betas in [0, 1), eps >= 0."""
    beta1, beta2 = group["betas"]
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"{name}: betas must be in [0, 1), got {group['betas']}")
    if group["eps"] < 0:
        raise ValueError(f"{name}: invalid eps {group['eps']}")


class Adam(Optimizer):
    """Kingma & Ba (2015), with PyTorch's arrangement of the bias corrections:

        g = grad + weight_decay * p          (L2 penalty; AdamW decays p instead)
        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                (amsgrad; v_max replaces v below)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        implementation_options(type(self).__name__, differentiable)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": amsgrad,
                                  "maximize": maximize, "foreach": foreach,
                                  "capturable": capturable, "differentiable": differentiable,
                                  "fused": fused,
                                  "decoupled_weight_decay": decoupled_weight_decay})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        check_betas_and_eps(type(self).__name__, group)

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        work, denom = self.scratch(p, 2)
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1 - lr * weight_decay
            else:
                np.multiply(p.data, weight_decay, out=work)
                grad = np.add(grad, work, out=work)
        np.subtract(grad, exp_avg, out=denom)
        denom *= 1 - beta1
        exp_avg += denom
        exp_avg_sq *= beta2
        np.multiply(grad, grad, out=denom)
        denom *= 1 - beta2
        exp_avg_sq += denom
        second = exp_avg_sq
        if group["amsgrad"]:
            second = np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        step_size = lr / (1 - beta1**step)
        np.sqrt(second, out=denom)
        denom /= math.sqrt(1 - beta2**step)
        denom += eps
        np.divide(exp_avg, denom, out=denom)
        denom *= step_size
        p.data -= denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): p *= 1 - lr * weight_decay
    before the Adam step, and the gradient is left alone. Default weight_decay 0.01."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
