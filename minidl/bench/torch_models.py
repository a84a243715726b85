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


def _loaded(torch: Any, model: Any, state: dict[str, np.ndarray]) -> Any:
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    return model
