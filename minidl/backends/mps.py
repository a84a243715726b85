"""torch.backends.mps's queries: minidl has no Metal backend (see minidl.device)."""

from __future__ import annotations


def is_available() -> bool:
    return False


def is_built() -> bool:
    return False
