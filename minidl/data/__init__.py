"""Datasets, the DataLoader, the IDX file format and MNIST-layout datasets."""

from minidl.data import datasets, sampler
from minidl.data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from minidl.data.distributed import DistributedSampler
from minidl.data.idx import IDXFormatError, read_idx, write_idx
from minidl.data.loader import DataLoader, default_collate
from minidl.data.mnist import KMNIST, MNIST, ChecksumError, DownloadError, FashionMNIST

__all__ = [
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
    "DistributedSampler",
    "DownloadError",
    "FashionMNIST",
    "IDXFormatError",
    "TensorDataset",
    "read_idx",
    "write_idx",
]
