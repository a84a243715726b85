"""minidl's random number generator: one seeded NumPy Generator for every random op.

Initialisation, dropout masks and loader shuffles all draw from it, so `manual_seed(s)` makes a
whole run reproducible and `get_rng_state()` / `set_rng_state()` let a checkpoint resume it.
"""

from __future__ import annotations

import copy

import numpy as np

_generator = np.random.Generator(np.random.PCG64())


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator; returns it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative int, got {seed!r}")
    # In place, so code holding the generator sees the new seed.
    _generator.bit_generator.state = np.random.PCG64(int(seed)).state
    return _generator


def generator() -> np.random.Generator:
    """The global generator."""
    return _generator


def get_rng_state() -> dict:
    """The generator's full state: a dict of plain ints and strings (checkpoint-safe)."""
    return copy.deepcopy(_generator.bit_generator.state)


def set_rng_state(state: dict) -> None:
    """Restore a state returned by get_rng_state()."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError("set_rng_state: expected a PCG64 state dict from get_rng_state()")
    _generator.bit_generator.state = copy.deepcopy(state)
