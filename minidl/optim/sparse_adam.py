"""SparseAdam, as torch.optim.SparseAdam, for a library without sparse gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

from minidl.graph import enable_grad, no_grad
from minidl.optim.optimizer import Optimizer


class SparseAdam(Optimizer):
    """PyTorch's Adam for sparse gradients (it updates only the moments and parameter entries
    a gradient touches). minidl's gradients are all dense, and PyTorch's SparseAdam refuses
    dense gradients, so this one behaves as PyTorch's does with them: it constructs and
    validates like PyTorch (ValueError for lr <= 0, eps <= 0, a beta outside [0, 1)), and
    step() raises RuntimeError as soon as a parameter has a gradient (use Adam instead).
    Defaults lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, maximize: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "maximize": maximize})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        if not 0.0 < group["lr"]:
            raise ValueError(f"SparseAdam: invalid learning rate {group['lr']}")
        if not 0.0 < group["eps"]:
            raise ValueError(f"SparseAdam: invalid epsilon value {group['eps']}")
        for i, beta in enumerate(group["betas"]):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"SparseAdam: invalid beta parameter at index {i}: {beta}")

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run closure (if given); RuntimeError if any parameter then has a gradient."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        if any(p.grad is not None for group in self.param_groups for p in group["params"]):
            raise RuntimeError("SparseAdam does not support dense gradients, please consider "
                               "Adam instead (minidl has no sparse gradients)")
        return loss
