"""Rprop, as torch.optim.Rprop."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.optim.optimizer import Optimizer, implementation_options


class Rprop(Optimizer):
    """Resilient backpropagation (Riedmiller & Braun, 1993), PyTorch's variant: each element
    keeps its own step size, grown while the gradient's sign holds and shrunk when it flips;
    only the gradient's sign moves the parameter.

        s = sign(grad * prev)
        step_size = clamp(step_size * (etaplus if s > 0, etaminus if s < 0, 1 if s == 0),
                          *step_sizes)
        grad = 0 where s < 0           (after a sign flip, pause that element for one step)
        p = p - sign(grad) * step_size;  prev = grad

    Defaults lr=1e-2 (the initial step size), etas=(0.5, 1.2), step_sizes=(1e-6, 50).
    ValueError unless 0 < etaminus < 1 < etaplus, or for lr < 0.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, etas: tuple = (0.5, 1.2),
                 step_sizes: tuple = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        implementation_options("Rprop", differentiable)
        super().__init__(params, {"lr": lr, "etas": tuple(etas),
                                  "step_sizes": tuple(step_sizes), "foreach": foreach,
                                  "maximize": maximize, "differentiable": differentiable,
                                  "capturable": capturable})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        etaminus, etaplus = group["etas"]
        if not 0.0 < etaminus < 1.0 < etaplus:
            raise ValueError(f"Rprop: invalid eta values {etaminus}, {etaplus}")

    def _update(self, p, grad: np.ndarray, state: dict, group: dict) -> None:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        if not state:
            state["step"] = 0
            state["prev"] = np.zeros_like(p.data)
            state["step_size"] = np.full_like(p.data, group["lr"])
        state["step"] += 1
        prev, step_size = state["prev"], state["step_size"]
        factor = np.sign(grad * prev)
        # Replaced in this order, as PyTorch does, so a NaN product leaves a NaN factor.
        factor[factor > 0] = etaplus
        factor[factor < 0] = etaminus
        factor[factor == 0] = 1
        step_size *= factor
        np.clip(step_size, step_size_min, step_size_max, out=step_size)
        grad = np.array(grad, copy=True)
        grad[factor == factor.dtype.type(etaminus)] = 0
        p.data -= np.sign(grad) * step_size
        prev[...] = grad
