"""torch.backends.mkldnn's flag and query: minidl's CPU kernels are its own, not oneDNN's;
`enabled` can be read and set and changes nothing."""

from __future__ import annotations

enabled = True


def is_available() -> bool:
    return False
