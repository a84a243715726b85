"""ASGD, as torch.optim.ASGD."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.optimizer import Optimizer, implementation_options, scalar_dtype


class ASGD(Optimizer):
    """Averaged SGD (Polyak & Juditsky, 1992), PyTorch's form: SGD with a decaying rate eta
    and a decay term lambd, plus a running average `ax` of the iterates that starts at t0.

        g = grad + weight_decay * p
        p = p * (1 - lambd * eta) - eta * g
        ax = ax + mu * (p - ax)          (ax = p while mu == 1)
        eta = lr / (1 + lambd * lr * t)^alpha;   mu = 1 / max(1, t - t0)

    eta and mu are kept in float32 whatever the parameter's dtype (float64 if that is the
    default dtype), as PyTorch keeps them, so the iterates match its rounding. Defaults lr=1e-2,
    lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0; ValueError for lr < 0 or
    weight_decay < 0.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lambd: float = 1e-4,
                 alpha: float = 0.75, t0: float = 1e6, weight_decay: float = 0,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        implementation_options("ASGD", differentiable)
        super().__init__(params, {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0,
                                  "weight_decay": weight_decay, "foreach": foreach,
                                  "maximize": maximize, "differentiable": differentiable,
                                  "capturable": capturable})

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, lambd = group["lr"], group["lambd"]
        if not state:
            state["step"] = 0
            state["eta"] = scalar_dtype()(lr)
            state["mu"] = scalar_dtype()(1.0)
            state["ax"] = np.zeros_like(p.data)
        state["step"] += 1
        step = state["step"]
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        eta = float(state["eta"])
        p.data *= 1 - lambd * eta
        p.data -= eta * grad
        ax = state["ax"]
        if state["mu"] != 1:
            ax += (p.data - ax) * state["mu"]
        else:
            ax[...] = p.data
        real = type(state["eta"])
        state["eta"] = real(lr / ((1 + lambd * lr * step) ** group["alpha"]))
        state["mu"] = real(1 / max(1, step - group["t0"]))
