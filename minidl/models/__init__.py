"""Reference models."""

from minidl.models.lenet import LeNet5, LeNetCaffe

__all__ = ["LeNet5", "LeNetCaffe"]
