"""Datasets, the DataLoader, the IDX file format, MNIST-layout datasets, CIFAR-10 and image
transforms."""

from minidl.data import datasets, sampler, transforms
from minidl.data.cifar import CIFAR10
from minidl.data.dataset import (
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from minidl.data.distributed import DistributedSampler
from minidl.data.idx import IDXFormatError, read_idx, write_idx
from minidl.data.loader import DataLoader, default_collate, get_worker_info
from minidl.data.mnist import KMNIST, MNIST, ChecksumError, DownloadError, FashionMNIST

__all__ = [
    "CIFAR10",
    "ConcatDataset",
    "Subset",
    "datasets",
    "default_collate",
    "random_split",
    "sampler",
    "KMNIST",
    "MNIST",
    "ChecksumError",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "IterableDataset",
    "get_worker_info",
    "DownloadError",
    "FashionMNIST",
    "IDXFormatError",
    "TensorDataset",
    "read_idx",
    "transforms",
    "write_idx",
]
