"""torch.cuda's availability queries: minidl has no CUDA (see minidl.device)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from minidl import amp as _amp
from minidl.device import _cpu_only


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Nothing to seed without CUDA (as torch.cuda.manual_seed without a GPU, a no-op)."""


manual_seed_all = manual_seed


def current_device() -> int:
    raise _cpu_only("cuda")


def synchronize() -> None:
    raise _cpu_only("cuda")


def empty_cache() -> None:
    """Nothing is cached without CUDA (PyTorch's empty_cache is a no-op then too)."""


def _grad_scaler(init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 enabled: bool = True) -> _amp.GradScaler:
    return _amp.GradScaler("cuda", init_scale, growth_factor, backoff_factor, growth_interval,
                           enabled)


def _autocast(enabled: bool = True, dtype: Any = None, cache_enabled: bool = True
              ) -> _amp.autocast:
    return _amp.autocast("cuda", dtype, enabled, cache_enabled)


# torch.cuda.amp's (deprecated) names: without CUDA both warn and disable themselves.
amp = SimpleNamespace(GradScaler=_grad_scaler, autocast=_autocast)
