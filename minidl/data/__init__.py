"""Datasets, the DataLoader, the IDX file format and MNIST-layout datasets."""

from minidl.data.dataset import Dataset, TensorDataset
from minidl.data.distributed import DistributedSampler
from minidl.data.idx import IDXFormatError, read_idx, write_idx
from minidl.data.loader import DataLoader
from minidl.data.mnist import KMNIST, MNIST, ChecksumError, DownloadError, FashionMNIST

__all__ = [
    "KMNIST",
    "MNIST",
    "ChecksumError",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "DownloadError",
    "FashionMNIST",
    "IDXFormatError",
    "TensorDataset",
    "read_idx",
    "write_idx",
]
