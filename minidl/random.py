"""minidl's random number generator: one seeded NumPy Generator for every random op.

Initialisation, dropout masks and loader shuffles all draw from it, so `manual_seed(s)` makes a
whole run reproducible and `get_rng_state()` / `set_rng_state()` let a checkpoint resume it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import numpy as np

_generator = np.random.Generator(np.random.PCG64())


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator; returns it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative int, got {seed!r}")
    # In place, so code holding the generator sees the new seed.
    _generator.bit_generator.state = np.random.PCG64(int(seed)).state
    _initial_seed[0] = int(seed)
    return _generator


def generator() -> np.random.Generator:
    """The global generator."""
    return _generator


def numpy_rng(gen: object = None) -> np.random.Generator:
    """The NumPy generator behind a `generator=` argument: a minidl.Generator's, a NumPy
    Generator itself, or (None) the global one."""
    if gen is None:
        return _generator
    return gen.numpy_generator if hasattr(gen, "numpy_generator") else gen


def get_rng_state() -> dict:
    """The generator's full state: a dict of plain ints and strings (checkpoint-safe)."""
    return copy.deepcopy(_generator.bit_generator.state)


def set_rng_state(state: dict) -> None:
    """Restore a state returned by get_rng_state()."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError("set_rng_state: expected a PCG64 state dict from get_rng_state()")
    _generator.bit_generator.state = copy.deepcopy(state)


@contextlib.contextmanager
def fork_rng(devices: object = None, enabled: bool = True, _caller: str = "fork_rng",
             _devices_kw: str = "devices", device_type: str = "cuda") -> Iterator[None]:
    """Run the block with the global generator's state saved and restored afterwards
    (torch.random.fork_rng; there are no device generators to fork)."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class Generator:
    """A random generator of its own (torch.Generator): pass it as `generator=` to the random
    factories, DataLoader, random_split and samplers."""

    def __init__(self, device: object = "cpu") -> None:
        from minidl.device import check_device

        check_device("Generator", device)
        self._seed = int(np.random.SeedSequence().entropy % 2**63)
        self.numpy_generator = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> Generator:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Generator.manual_seed: expected a non-negative int, got {seed!r}")
        self._seed = int(seed)
        self.numpy_generator.bit_generator.state = np.random.PCG64(self._seed).state
        return self

    def initial_seed(self) -> int:
        return self._seed

    def seed(self) -> int:
        self.manual_seed(int(np.random.SeedSequence().entropy % 2**63))
        return self._seed

    def get_state(self) -> dict:
        return copy.deepcopy(self.numpy_generator.bit_generator.state)

    def set_state(self, state: dict) -> None:
        self.numpy_generator.bit_generator.state = copy.deepcopy(state)


_initial_seed = [0]


def initial_seed() -> int:
    """The seed last given to manual_seed (0 if never called)."""
    return _initial_seed[0]


def seed() -> int:
    """Reseed the global generator from fresh entropy; returns the seed."""
    s = int(np.random.SeedSequence().entropy % 2**63)
    manual_seed(s)
    return s
