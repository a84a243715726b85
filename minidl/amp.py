"""Mixed precision (torch.amp's names): GradScaler and autocast.

minidl computes in float32 or float64 only (no float16/bfloat16), so autocast cannot lower a
region's precision: on the CPU, an enabled autocast raises NotImplementedError, and
`enabled=False` is the usual no-op context. As in PyTorch without a GPU, the CUDA forms
(device_type="cuda", minidl.cuda.amp) warn and disable themselves.

GradScaler works as PyTorch's does on the CPU: it multiplies the loss by a scale, unscales the
gradients before the step, skips the step when a gradient is inf or NaN and then backs the
scale off, and grows it after growth_interval clean steps. Without float16 gradients it never
needs to, but scripts written for AMP run unchanged and give PyTorch's schedule.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from minidl.grad_mode import no_grad

__all__ = ["GradScaler", "autocast"]


def _cuda_unavailable(what: str) -> None:
    warnings.warn(f"{what}: CUDA is not available (minidl runs on the CPU only); disabling.",
                  stacklevel=3)


class autocast:  # noqa: N801 (PyTorch's name)
    """torch.autocast(device_type, dtype=None, enabled=True, cache_enabled=None), as a context
    manager or decorator. Only enabled=False (or a CUDA device, which disables itself with a
    warning) is possible: minidl has no lower-precision dtypes."""

    def __init__(self, device_type: str = "cpu", dtype: Any = None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        if not isinstance(device_type, str):
            raise ValueError(f"autocast: expected device_type to be a str, got "
                             f"{type(device_type).__name__}")
        self.device_type, self.fast_dtype = device_type, dtype
        if enabled and device_type == "cuda":
            _cuda_unavailable("autocast(device_type='cuda')")
            enabled = False
        if enabled:
            raise NotImplementedError(
                f"autocast(device_type={device_type!r}, enabled=True): minidl has no float16 or "
                "bfloat16, so it cannot run a region in lower precision; use enabled=False "
                "(see README, Differences from PyTorch)")
        self.enabled = False

    def __enter__(self) -> autocast:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __call__(self, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapped


class GradScaler:
    """torch.amp.GradScaler(device="cuda", init_scale=2**16, growth_factor=2.0,
    backoff_factor=0.5, growth_interval=2000, enabled=True); the default device is PyTorch's,
    so GradScaler() disables itself with a warning, as PyTorch does without a GPU. Pass
    device="cpu" for a working scaler."""

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:
        if enabled and device == "cuda":
            _cuda_unavailable("GradScaler(device='cuda')")
            enabled = False
        if enabled:
            if growth_factor <= 1.0:
                raise ValueError("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise ValueError("The backoff factor must be < 1.0.")
        self.device, self._enabled = device, bool(enabled)
        # PyTorch keeps the scale as a float32 tensor: the same rounding here.
        self._scale = np.float32(init_scale)
        self._growth_factor, self._backoff_factor = growth_factor, backoff_factor
        self._growth_interval, self._growth_tracker = int(growth_interval), 0
        self._per_optimizer: dict[int, dict] = {}

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        return float(self._scale) if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def scale(self, outputs: Any) -> Any:
        """outputs (a Tensor, or nested lists/tuples of them) times the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        return outputs * float(self._scale)

    def _state(self, optimizer: Any) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"unscaled": False,
                                                              "found_inf": False})

    def unscale_(self, optimizer: Any) -> None:
        """Divide optimizer's gradients by the scale in place and note whether any is inf/NaN.
        Raises RuntimeError when called twice for one optimizer before update()."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["unscaled"]:
            raise RuntimeError("unscale_() has already been called on this optimizer since "
                               "the last update().")
        inv_scale = np.float32(1.0 / np.float64(self._scale))
        found = False
        with no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.data
                    g *= g.dtype.type(inv_scale)
                    found = found or not bool(np.isfinite(g).all())
        state["unscaled"], state["found_inf"] = True, found

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """optimizer.step(*args, **kwargs) after unscale_, unless a gradient was inf/NaN (then
        the step is skipped and None returned)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        state = self._state(optimizer)
        if not state["unscaled"]:
            self.unscale_(optimizer)
        if state["found_inf"]:
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale: float | None = None) -> None:
        """Back the scale off after a skipped step, grow it after growth_interval clean ones
        (PyTorch's _amp_update_scale_), or set it to new_scale."""
        if not self._enabled:
            return
        if not self._per_optimizer and new_scale is None:
            raise RuntimeError("GradScaler.update: no inf checks were recorded prior to "
                               "update (call step(optimizer) first)")
        if new_scale is not None:
            self._scale = np.float32(float(new_scale))
        elif any(s["found_inf"] for s in self._per_optimizer.values()):
            self._scale = np.float32(self._scale * np.float32(self._backoff_factor))
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self._growth_interval:
                grown = np.float32(self._scale * np.float32(self._growth_factor))
                if math.isfinite(grown):
                    self._scale = grown
                self._growth_tracker = 0
        self._per_optimizer.clear()

    def state_dict(self) -> dict:
        if not self._enabled:
            return {}
        return {"scale": float(self._scale), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of GradScaler.")
        self._scale = np.float32(state_dict["scale"])
        self._growth_factor = state_dict["growth_factor"]
        self._backoff_factor = state_dict["backoff_factor"]
        self._growth_interval = state_dict["growth_interval"]
        self._growth_tracker = state_dict["_growth_tracker"]
