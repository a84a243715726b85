"""torchvision.datasets' names for the datasets minidl ships:
`from minidl.data import datasets; datasets.MNIST(root, train=True, transform=...)`."""

from minidl.data.mnist import KMNIST, MNIST, FashionMNIST

__all__ = ["KMNIST", "MNIST", "FashionMNIST"]
