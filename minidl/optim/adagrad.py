"""Adagrad, as torch.optim.Adagrad."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.optimizer import Optimizer, implementation_options


class Adagrad(Optimizer):
    """Duchi et al. (2011), PyTorch's form:

        g = grad + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g                       (s starts at initial_accumulator_value)
        p = p - clr * g / (sqrt(s) + eps)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        implementation_options("Adagrad", differentiable)
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay, "eps": eps,
                                  "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value,
                                  "foreach": foreach, "maximize": maximize,
                                  "differentiable": differentiable, "fused": fused})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        if group["lr_decay"] < 0 or group["initial_accumulator_value"] < 0 or group["eps"] < 0:
            raise ValueError(
                f"Adagrad: invalid lr_decay {group['lr_decay']}, initial_accumulator_value "
                f"{group['initial_accumulator_value']} or eps {group['eps']}"
            )

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        work, std = self.scratch(p, 2)
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
        state["step"] += 1
        if group["weight_decay"] != 0:
            np.multiply(p.data, group["weight_decay"], out=work)
            grad = np.add(grad, work, out=work)
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        total = state["sum"]
        np.multiply(grad, grad, out=std)
        total += std
        np.sqrt(total, out=std)
        std += group["eps"]
        np.divide(grad, std, out=std)
        std *= clr
        p.data -= std
