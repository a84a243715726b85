"""Backend switches and queries (torch.backends' names that apply to minidl), and the switches
that choose between equivalent kernel algorithms (minidl.backends.conv)."""

from minidl.backends import cudnn, mkldnn, mps

__all__ = ["cudnn", "mkldnn", "mps"]
