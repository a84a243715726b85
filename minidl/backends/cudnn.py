"""torch.backends.cudnn's flags and queries. minidl has no cuDNN: the flags can be read and
set (`cudnn.benchmark = True` in a training script changes nothing), and minidl's kernels
are deterministic whatever they say (see README, Threads and determinism)."""

from __future__ import annotations

enabled = True
benchmark = False
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    return False


def version() -> None:
    return None
