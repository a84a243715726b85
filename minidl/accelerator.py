"""torch.accelerator's queries, which the current PyTorch examples use to pick a device:
minidl has no accelerator, so scripts fall back to the CPU."""

from __future__ import annotations


def is_available() -> bool:
    return False


def current_accelerator(check_available: bool = False) -> None:
    """None: there is no accelerator."""
    return None


def device_count() -> int:
    return 0
