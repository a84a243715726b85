"""PyTorch twins of minidl's models, with the same parameter names, so that one state dict
(minidl's initial weights, as NumPy arrays) loads into both."""

from __future__ import annotations

from typing import Any

import numpy as np


def lenet5(torch: Any, state: dict[str, np.ndarray]) -> Any:
    """minidl.models.LeNet5 in PyTorch, loaded with `state`."""
    nn, F = torch.nn, torch.nn.functional

    class LeNet5(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(400, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = F.relu(self.fc1(x.flatten(1)))
            return self.fc3(F.relu(self.fc2(x)))

    return _loaded(torch, LeNet5(), state)


def resnet20(torch: Any, state: dict[str, np.ndarray]) -> Any:
    """minidl.models.resnet20 (CIFAR ResNet-20, option-A shortcuts) in PyTorch, loaded with
    `state` (BatchNorm running statistics included)."""
    nn, F = torch.nn, torch.nn.functional

    class BasicBlock(nn.Module):
        def __init__(self, in_channels: int, channels: int, stride: int) -> None:
            super().__init__()
            self.side, self.stride = (channels - in_channels) // 2, stride
            self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x):
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            if self.stride == 1:
                return F.relu(out + x)
            shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.side, self.side))
            return F.relu(out + shortcut)

    class ResNet20(nn.Module):
        def __init__(self, in_channels: int, num_classes: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            blocks, width = [], 16
            for k, channels in enumerate((16, 32, 64)):
                for b in range(3):
                    blocks.append(BasicBlock(width, channels, 2 if k > 0 and b == 0 else 1))
                    width = channels
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            x = self.blocks(F.relu(self.bn1(self.conv1(x))))
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    return _loaded(torch, ResNet20(state["conv1.weight"].shape[1], len(state["fc.bias"])), state)


def _loaded(torch: Any, model: Any, state: dict[str, np.ndarray]) -> Any:
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    return model
