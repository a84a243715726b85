"""Reference models."""

from minidl.models.lenet import LeNet5, LeNetCaffe
from minidl.models.resnet import BasicBlock, ResNetCIFAR, resnet20

__all__ = ["BasicBlock", "LeNet5", "LeNetCaffe", "ResNetCIFAR", "resnet20"]
