"""LeNet for 28x28 single-channel digits."""

from __future__ import annotations

from minidl import nn
from minidl.nn import functional as F
from minidl.tensor import Tensor


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pooling, as in most modern reimplementations.

    conv 1->6 5x5 pad 2, ReLU, max-pool 2 -> (6, 14, 14); conv 6->16 5x5, ReLU, max-pool 2 ->
    (16, 5, 5); then 400 -> 120 -> 84 -> num_classes with ReLU between.
    x: (N, 1, 28, 28) float; returns logits (N, num_classes). 61,706 parameters for 10 classes.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNetCaffe(nn.Module):
    """The LeNet of Caffe's MNIST example: conv 1->20 5x5, max-pool 2, conv 20->50 5x5,
    max-pool 2, 800 -> 500, ReLU, 500 -> num_classes (no activation after the convolutions).

    x: (N, 1, 28, 28) float; returns logits (N, num_classes). 431,080 parameters for 10 classes.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)
