"""Memory formats (torch.channels_last and friends). minidl tensors are always C-contiguous:
a format changes how PyTorch strides a tensor, never its values, so minidl accepts these
wherever PyTorch does (`x.to(memory_format=...)`, `x.contiguous(memory_format=...)`,
`model.to(memory_format=...)`) and keeps its one layout."""

from __future__ import annotations

from typing import Any


class memory_format:  # noqa: N801 (PyTorch's name)
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"minidl.{self.name}"


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
preserve_format = memory_format("preserve_format")


def check_memory_format(op: str, value: Any) -> None:
    """Accept None or one of the formats above; raise TypeError for anything else."""
    if value is not None and not isinstance(value, memory_format):
        raise TypeError(f"{op}: memory_format must be a minidl memory format such as "
                        f"minidl.channels_last, got {value!r}")
