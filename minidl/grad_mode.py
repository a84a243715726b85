"""The grad-mode switches with PyTorch's call forms: `no_grad()`, bare `@no_grad`,
`set_grad_enabled(flag)` (a call that switches at once, or a context manager / decorator that
restores on exit) and `inference_mode()` (no_grad: minidl has no separate inference tensors).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from minidl import graph
from minidl.graph import is_grad_enabled

__all__ = ["enable_grad", "inference_mode", "is_grad_enabled", "is_inference_mode_enabled",
           "no_grad", "set_grad_enabled"]

_inference_depth = [0]


def _mode(enabled: bool, func: Callable | None) -> Any:
    mode = graph._GradMode(enabled)
    if func is None:
        return mode
    if not callable(func):
        raise TypeError(f"expected a function to decorate, got {type(func).__name__}")
    return mode(func)


def no_grad(func: Callable | None = None) -> Any:
    """Context manager and decorator (with or without parentheses): ops inside record
    nothing (inference, optimizer steps)."""
    return _mode(False, func)


def enable_grad(func: Callable | None = None) -> Any:
    """Context manager and decorator: recording on, even inside `no_grad`."""
    return _mode(True, func)


class set_grad_enabled:  # noqa: N801 (PyTorch's name)
    """Turn recording on or off now; as a context manager or decorator, restore the previous
    mode on exit."""

    def __init__(self, mode: bool) -> None:
        self.previous = is_grad_enabled()
        self.mode = bool(mode)
        self._switch = graph._GradMode(self.mode)
        self._switch.__enter__()

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self._switch.__exit__(*exc)

    def __call__(self, func: Callable) -> Callable:
        # Used as a decorator the switch applies per call, not from construction on.
        self._switch.__exit__(None, None, None)
        mode = self.mode

        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with graph._GradMode(mode):
                return func(*args, **kwargs)

        return wrapped


class inference_mode:  # noqa: N801
    """no_grad under PyTorch's inference-mode name (mode=False leaves recording as it is)."""

    def __init__(self, mode: bool | Callable = True) -> None:
        self._func = mode if callable(mode) else None
        self.mode = True if callable(mode) else bool(mode)
        self._switch: Any = None

    def __enter__(self) -> None:
        if self.mode:
            self._switch = graph._GradMode(False)
            self._switch.__enter__()
            _inference_depth[0] += 1

    def __exit__(self, *exc: object) -> None:
        if self._switch is not None:
            _inference_depth[0] -= 1
            self._switch.__exit__(*exc)
            self._switch = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._func is not None:  # bare @inference_mode: this call is the function's
            with inference_mode(True):
                return self._func(*args, **kwargs)
        (func,) = args
        mode = self.mode

        @functools.wraps(func)
        def wrapped(*a: Any, **k: Any) -> Any:
            with inference_mode(mode):
                return func(*a, **k)

        return wrapped


def is_inference_mode_enabled() -> bool:
    return _inference_depth[0] > 0
