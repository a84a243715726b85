"""Datasets, the DataLoader, the IDX file format, MNIST-layout datasets, CIFAR-10 and image
transforms."""

from minidl.data import transforms
from minidl.data.cifar import CIFAR10
from minidl.data.dataset import Dataset, TensorDataset
from minidl.data.idx import IDXFormatError, read_idx, write_idx
from minidl.data.loader import DataLoader
from minidl.data.mnist import KMNIST, MNIST, ChecksumError, DownloadError, FashionMNIST

__all__ = [
    "CIFAR10",
    "KMNIST",
    "MNIST",
    "ChecksumError",
    "DataLoader",
    "Dataset",
    "DownloadError",
    "FashionMNIST",
    "IDXFormatError",
    "TensorDataset",
    "read_idx",
    "transforms",
    "write_idx",
]
