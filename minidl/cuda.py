"""torch.cuda's availability queries: minidl has no CUDA (see minidl.device)."""

from __future__ import annotations

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
