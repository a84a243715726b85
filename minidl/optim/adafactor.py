"""Adafactor, as torch.optim.Adafactor."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.optimizer import Optimizer, lerp_


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.sum(x * x))) / math.sqrt(x.size)


class Adafactor(Optimizer):
    """Adafactor (Shazeer & Stern, 2018), PyTorch's form: the second moment of a matrix-shaped
    gradient (any ndim >= 2) is kept factored, as one mean over the last dim and one over
    the second-to-last; a vector keeps it whole. At step t:

        beta = t^beta2_decay;  rho = min(lr, 1 / sqrt(t))
        alpha = max(eps2, rms(p)) * rho                     (rms of p before the decay)
        p = p * (1 - lr * weight_decay)
        row = lerp(row, mean(g^2, -1), beta); col = lerp(col, mean(g^2, -2), beta)
        v = row col / max(mean(row, -2), eps1)              (v = lerp(v, g^2, beta) for ndim < 2)
        u = g / sqrt(max(v, eps1^2));  p = p - alpha / max(1, rms(u) / d) * u

    eps=(eps1, eps2) with eps1=None meaning the machine epsilon of the group's first
    parameter with a gradient, as in PyTorch. Defaults lr=1e-2, beta2_decay=-0.8,
    eps=(None, 1e-3), d=1.0, weight_decay=0.0. ValueError for lr < 0, beta2_decay > 0,
    eps1 or eps2 < 0, d < 1 or weight_decay < 0. State: step, and row_var and col_var
    (shapes (..., R, 1) and (..., 1, C)) or variance.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple = (None, 1e-3), d: float = 1.0, weight_decay: float = 0.0, *,
                 foreach: bool | None = None, maximize: bool = False) -> None:
        super().__init__(params, {"lr": lr, "beta2_decay": beta2_decay, "eps": tuple(eps),
                                  "d": d, "weight_decay": weight_decay, "foreach": foreach,
                                  "maximize": maximize})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        eps1, eps2 = group["eps"]
        if group["beta2_decay"] > 0:
            raise ValueError(f"Adafactor: beta2_decay should be <= 0 but is: "
                             f"{group['beta2_decay']}")
        if eps1 is not None and eps1 < 0:
            raise ValueError(f"Adafactor: epsilon1 should be >= 0 but is: {eps1}")
        if eps2 < 0:
            raise ValueError(f"Adafactor: epsilon2 should be >= 0 but is: {eps2}")
        if group["d"] < 1:
            raise ValueError(f"Adafactor: clipping threshold d should be >= 1 but is: "
                             f"{group['d']}")

    def _check_state(self, p, state: dict) -> None:
        # row_var and col_var are not shaped like p; only the whole variance is.
        if "variance" in state:
            super()._check_state(p, {"variance": state["variance"]})

    def _load_state_value(self, p, index: int, key: str, value: Any) -> Any:
        if key in ("row_var", "col_var"):
            value = getattr(value, "data", value)
            return np.array(value, dtype=p.data.dtype, copy=True)
        return super()._load_state_value(p, index, key, value)

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, eps1, eps2 = group["lr"], *group["eps"]
        if eps1 is None:
            first = next(q for q in group["params"] if q.grad is not None)
            eps1 = float(np.finfo(first.data.dtype).eps)
        if not state:
            state["step"] = 0
            if grad.ndim > 1:
                state["row_var"] = np.zeros(grad.shape[:-1] + (1,), p.data.dtype)
                state["col_var"] = np.zeros(grad.shape[:-2] + (1, grad.shape[-1]),
                                            p.data.dtype)
            else:
                state["variance"] = np.zeros_like(p.data)
        state["step"] += 1
        step = state["step"]
        beta = step ** group["beta2_decay"]
        rho = min(lr, 1 / step**0.5)
        alpha = max(eps2, _rms(p.data)) * rho
        if group["weight_decay"] != 0:
            p.data *= 1 - lr * group["weight_decay"]
        squared = grad * grad
        if grad.ndim > 1:
            # PyTorch takes the means as squared norms over the dim's size.
            row_var, col_var = state["row_var"], state["col_var"]
            lerp_(row_var, np.sqrt(squared.sum(axis=-1, keepdims=True)) ** 2 / grad.shape[-1],
                  beta)
            lerp_(col_var, np.sqrt(squared.sum(axis=-2, keepdims=True)) ** 2 / grad.shape[-2],
                  beta)
            estimate = row_var * col_var
            estimate /= np.maximum(row_var.mean(axis=-2, keepdims=True), eps1)
        else:
            lerp_(state["variance"], squared, beta)
            estimate = state["variance"].copy()
        np.maximum(estimate, eps1 * eps1, out=estimate)
        update = 1 / np.sqrt(estimate)
        update *= grad
        denom = max(1.0, _rms(update) / group["d"])
        p.data -= (alpha / denom) * update
