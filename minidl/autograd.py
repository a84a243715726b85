"""Gradient checking by central differences, and the public names of the graph machinery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np

from minidl.graph import Context, Function, enable_grad, is_grad_enabled, no_grad
from minidl.tensor import Tensor

__all__ = ["Context", "Function", "GradcheckError", "enable_grad", "gradcheck",
           "is_grad_enabled", "no_grad"]


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Compare backward() of `fn(*inputs)` with central differences, in float64.

    A non-scalar output is projected on a fixed random direction r, checking the vector-Jacobian
    product d(sum(r * out))/d(input) for every input that requires grad. Returns True, or raises
    GradcheckError naming the input, the worst element and both values. Inputs must be float64
    (float32 differences are swamped by rounding).
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs")

    out = fn(*inputs)
    direction = np.random.default_rng(seed).standard_normal(out.shape)

    def objective() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * direction))

    for i in checked:
        inputs[i].grad = None
    with enable_grad():
        out = fn(*inputs)
        if not out.requires_grad:
            raise GradcheckError("gradcheck: the output does not depend on any input")
        out.backward(direction.astype(out.dtype))

    for i in checked:
        t = inputs[i]
        analytic = np.zeros_like(t.data) if t.grad is None else t.grad.data.copy()
        numeric = np.zeros_like(t.data)
        flat = t.data.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = objective()
            flat[j] = original - eps
            minus = objective()
            flat[j] = original
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if error.size and error.max() > 0:
            worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), error.shape))
            raise GradcheckError(
                f"gradcheck: input {i} (shape {t.shape}), element {worst}: "
                f"analytic {analytic[worst]:.8g} vs numerical {numeric[worst]:.8g} "
                f"(atol={atol}, rtol={rtol})"
            )
    return True
