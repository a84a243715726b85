"""PyTorch's torch.utils names: minidl.utils.data."""

from minidl.utils import data

__all__ = ["data"]
