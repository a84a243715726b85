"""Devices: minidl runs on the CPU only. `device("cpu")`, `.to("cpu")` and `device=` arguments
are accepted for PyTorch code; asking for any other device raises a clear error.

`cuda`, `backends.mps` and `accelerator` answer the availability questions scripts ask
(nothing is available), so `device = "cuda" if torch.cuda.is_available() else "cpu"` picks
the CPU.
"""

from __future__ import annotations

from typing import Any


def _cpu_only(name: str) -> RuntimeError:
    return RuntimeError(
        f"device {name!r}: minidl is a CPU-only engine; only the 'cpu' device exists "
        "(minidl.cuda.is_available() is False)"
    )


class device:  # noqa: N801 (PyTorch's name)
    """A device: device("cpu"), device("cpu", 0) or device("cpu:0"). Other types raise."""

    __slots__ = ("type", "index")

    def __init__(self, type: Any, index: int | None = None) -> None:  # noqa: A002
        if isinstance(type, device):
            type, index = type.type, type.index
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string such as 'cpu', got {type!r}")
        name, _, number = type.partition(":")
        if name != "cpu":
            raise _cpu_only(type)
        if number:
            index = int(number)
        self.type = "cpu"
        self.index = index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except (RuntimeError, ValueError):
                return False
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __repr__(self) -> str:
        suffix = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{suffix})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


cpu = device("cpu")


def check_device(op: str, value: Any) -> None:
    """Accept None, 'cpu', 'cpu:N' or a cpu device; raise for anything else."""
    if value is None or isinstance(value, device):
        return
    if isinstance(value, int) and not isinstance(value, bool):
        raise _cpu_only(f"cuda:{value}")
    device(value)


def set_default_device(value: Any) -> None:
    """Only the CPU can be the default device."""
    check_device("set_default_device", value)


def get_default_device() -> device:
    return cpu
