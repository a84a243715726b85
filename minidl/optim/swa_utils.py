"""Stochastic weight averaging and EMA of a model, as torch.optim.swa_utils: AveragedModel
keeps a running average of a model's parameters (optionally buffers), SWALR anneals the
learning rate to a constant SWA rate, update_bn recomputes BatchNorm statistics for the
averaged weights with one pass over the data.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from minidl.dtypes import get_default_dtype
from minidl.graph import no_grad
from minidl.nn.layers import _BatchNorm
from minidl.nn.module import Module
from minidl.optim.lr_scheduler import LRScheduler, _per_group
from minidl.optim.optimizer import Optimizer, lerp_
from minidl.tensor import Tensor, tensor

__all__ = ["SWALR", "AveragedModel", "get_ema_avg_fn", "get_ema_multi_avg_fn",
           "get_swa_avg_fn", "get_swa_multi_avg_fn", "update_bn"]


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    """An in-place EMA over lists of tensors: ema = decay * ema + (1 - decay) * model (for
    floats as a lerp with weight 1 - decay). ValueError unless 0 <= decay <= 1."""
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in "
                         "[0,1] range.")

    def ema_update(ema_params: list[Tensor], current_params: list[Tensor], _: Any) -> None:
        if np.issubdtype(ema_params[0].data.dtype, np.floating):
            for ema, current in zip(ema_params, current_params):
                lerp_(ema.data, current.data, 1 - decay)
        else:
            # An integer tensor times a Python float is a default-dtype float in PyTorch;
            # copying the sum back truncates it.
            real = get_default_dtype().type
            for ema, current in zip(ema_params, current_params):
                ema.data[...] = np.trunc(ema.data.astype(real) * real(decay)
                                         + current.data.astype(real) * real(1 - decay))

    return ema_update


def get_swa_multi_avg_fn() -> Callable:
    """An in-place equal-weight average over lists of float tensors: avg lerps towards the
    model with weight 1 / (n + 1), that weight rounded to the default dtype as PyTorch's (it
    divides by the int64 count tensor). Integer tensors raise RuntimeError, as PyTorch's addcdiv."""

    def swa_update(averaged: list[Tensor], current: list[Tensor], num_averaged: Any) -> None:
        count = int(num_averaged.item() if isinstance(num_averaged, Tensor) else num_averaged)
        if not np.issubdtype(averaged[0].data.dtype, np.floating):
            raise RuntimeError("get_swa_multi_avg_fn: integer tensors cannot be averaged "
                               "(PyTorch's integer addcdiv is no longer supported)")
        weight = 1 / (count + 1)
        if isinstance(num_averaged, Tensor):
            real = get_default_dtype().type
            weight = float(real(1) / real(count + 1))
        for avg, model in zip(averaged, current):
            lerp_(avg.data, model.data, weight)

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable:
    """avg_fn(ema, model, n) = decay * ema + (1 - decay) * model. ValueError unless
    0 <= decay <= 1."""
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in "
                         "[0,1] range.")

    def ema_update(ema_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn() -> Callable:
    """avg_fn(avg, model, n) = avg + (model - avg) / (n + 1): the running mean of n + 1."""

    def swa_update(averaged_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


def _swa_average_(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> None:
    """get_swa_avg_fn's update on arrays, in the parameter's dtype. An integer buffer takes
    PyTorch's result: the division by the int64 count gives a default-dtype float, and its
    copy back into the int64 tensor truncates."""
    avg, count = averaged.data, int(num_averaged.item()) + 1
    if np.issubdtype(avg.dtype, np.floating):
        avg += (current.data - avg) / avg.dtype.type(count)
    else:
        real = get_default_dtype().type
        avg[...] = np.trunc(avg.astype(real) + (current.data - avg).astype(real) / real(count))


class AveragedModel(Module):
    """A deep copy of `model` (as `self.module`) whose parameters are a running average of
    the model's, updated by update_parameters(model). The first update copies the model;
    later ones apply

      - avg_fn(averaged, model, n_averaged) -> Tensor, per tensor, or
      - multi_avg_fn(averaged_list, model_list, n_averaged), in place, per dtype group,
      - else the equal-weight mean (SWA): averaged + (model - averaged) / (n_averaged + 1).

    use_buffers=True averages the buffers too (BatchNorm's running statistics); otherwise
    the buffers are copied from the model. `n_averaged` (an int64 buffer) counts the updates;
    state_dict() holds it and the module's entries under "module.". forward calls the copy.
    Giving both avg_fn and multi_avg_fn raises AssertionError, as PyTorch. device: "cpu".
    """

    def __init__(self, model: Module, device: Any = None, avg_fn: Callable | None = None,
                 multi_avg_fn: Callable | None = None, use_buffers: bool = False) -> None:
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", tensor(np.zeros((), dtype=np.int64)))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @no_grad()
    def update_parameters(self, model: Module) -> None:
        """Fold `model`'s current parameters (and buffers, with use_buffers) into the
        average and count one more model in n_averaged."""
        if self.use_buffers:
            mine = list(itertools.chain(self.module.parameters(), self.module.buffers()))
            theirs = list(itertools.chain(model.parameters(), model.buffers()))
        else:
            mine, theirs = list(self.parameters()), list(model.parameters())
        # zip stops at the shorter list, as PyTorch's (strict=False).
        pairs = [(a.detach(), m.detach()) for a, m in zip(mine, theirs)]
        count = int(self.n_averaged.item())
        if count == 0:
            for averaged, current in pairs:
                averaged.data[...] = current.data
        elif self.avg_fn is not None and self.multi_avg_fn is None:
            for averaged, current in pairs:
                result = self.avg_fn(averaged, current, self.n_averaged)
                averaged.data[...] = result.data if isinstance(result, Tensor) else result
        else:
            groups: dict[np.dtype, list] = {}
            for averaged, current in pairs:
                groups.setdefault(averaged.data.dtype, []).append((averaged, current))
            for group in groups.values():
                if self.multi_avg_fn is not None:
                    self.multi_avg_fn([a for a, _ in group], [m for _, m in group],
                                      self.n_averaged)
                else:
                    for averaged, current in group:
                        _swa_average_(averaged, current, self.n_averaged)
        if not self.use_buffers:
            for mine_buffer, model_buffer in zip(self.module.buffers(), model.buffers(),
                                                 strict=True):
                mine_buffer.data[...] = model_buffer.data
        self.n_averaged.data[...] = count + 1


@no_grad()
def update_bn(loader: Iterable[Any], model: Module, device: Any = None) -> None:
    """Recompute every BatchNorm's running mean and variance in `model` as the plain average
    over one pass of `loader` (each batch a Tensor, or a list/tuple whose first element is
    the input). The model runs in training mode for the pass and is restored afterwards, as
    are the layers' momenta; a model without BatchNorm is left alone."""
    momenta = {}
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if device is not None:
            batch = batch.to(device)
        model(batch)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    """Anneal each group's lr to swa_lr (one value or one per group, stored in the groups as
    "swa_lr") over anneal_epochs steps, by cosine ("cos") or linearly ("linear"), then hold
    it, in PyTorch's recurrence: each step recovers the annealing's start from the current
    lr and the previous fraction, so the schedule follows other changes to the lr.
    ValueError for another strategy or anneal_epochs not an int >= 0.
    """

    def __init__(self, optimizer: Optimizer, swa_lr: float | list[float], anneal_epochs: int = 10,
                 anneal_strategy: str = "cos", last_epoch: int = -1) -> None:
        swa_lrs = _per_group("swa_lr", swa_lr, len(optimizer.param_groups), "SWALR")
        for value, group in zip(swa_lrs, optimizer.param_groups):
            group["swa_lr"] = value
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    _excluded: tuple = ("optimizer", "_initial", "anneal_func")

    @staticmethod
    def _linear_anneal(t: float) -> float:
        return t

    @staticmethod
    def _cosine_anneal(t: float) -> float:
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _get_initial_lr(lr: float, swa_lr: float, alpha: float) -> float:
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def _set_anneal_func(self, anneal_strategy: str) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = self._cosine_anneal if anneal_strategy == "cos" else self._linear_anneal

    def get_lr(self) -> list[float]:
        # Counted from construction (_step_count), not last_epoch: a resumed SWALR anneals
        # from its construction on, as PyTorch's.
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        groups = self.optimizer.param_groups
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        prev_lrs = [self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha) for g in groups]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [g["swa_lr"] * alpha + lr * (1 - alpha) for g, lr in zip(groups, prev_lrs)]

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._set_anneal_func(self._anneal_strategy)
