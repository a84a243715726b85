"""ResNet-20 for 32x32 images (He, Zhang, Ren, Sun, "Deep Residual Learning for Image
Recognition", CVPR 2016, section 4.2: the CIFAR-10 networks).

Layout: a 3x3 convolution to 16 channels, then three stages of three basic blocks at 16, 32
and 64 channels on 32x32, 16x16 and 8x8 maps (the first block of stages 2 and 3 has stride
2), global average pooling and a fully connected layer: 6 * 3 + 2 = 20 weighted layers.

Shortcuts are option A, as the paper uses for every CIFAR network: the identity, and where a
block halves the map and doubles the channels, the input subsampled with stride 2 and padded
with zero channels on both sides. It adds no parameters (ResNet-20 keeps the paper's 0.27M)
and no convolutions; option B's 1x1 projections would add two convolution + BN pairs that the
paper's CIFAR results do not have.

Initialization: convolutions He-normal (std = sqrt(2 / fan_out), torchvision's ResNet
reference; the paper cites He et al. 2015), BatchNorm weight 1 and bias 0, the final Linear
PyTorch's default.
"""

from __future__ import annotations

from minidl import nn
from minidl.nn import functional as F
from minidl.nn import init
from minidl.tensor import Tensor


class BasicBlock(nn.Module):
    """conv3x3 (stride) - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU.

    x: (N, in_channels, H, W) -> (N, channels, H / stride, W / stride). With stride 2 the
    option-A shortcut takes x[:, :, ::2, ::2] and pads (channels - in_channels) / 2 zero
    channels before and after.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2) or (stride == 1) != (in_channels == channels):
            raise ValueError(
                f"BasicBlock: stride 1 keeps the channels and stride 2 changes them, got "
                f"in_channels={in_channels}, channels={channels}, stride={stride}"
            )
        if (channels - in_channels) % 2:
            raise ValueError(
                f"BasicBlock: option-A shortcut pads channels evenly on both sides, got "
                f"{in_channels} -> {channels}"
            )
        self.in_channels, self.channels, self.stride = in_channels, channels, stride
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return x
        side = (self.channels - self.in_channels) // 2
        return x[:, :, ::2, ::2].pad(((0, 0), (side, side), (0, 0), (0, 0)))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """The CIFAR ResNet family of depth 6n + 2 (n blocks per stage; n = 3 is ResNet-20).

    x: (N, in_channels, 32, 32) float (other sizes work: the head pools globally); returns
    logits (N, num_classes).
    """

    def __init__(self, blocks_per_stage: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        width = 16
        for k, channels in enumerate((16, 32, 64)):
            for b in range(blocks_per_stage):
                stride = 2 if k > 0 and b == 0 else 1
                stages.append(BasicBlock(width, channels, stride))
                width = channels
        self.blocks = nn.Sequential(*stages)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def resnet20(in_channels: int = 3, num_classes: int = 10) -> ResNetCIFAR:
    """ResNet-20 (0.27M parameters for 10 classes): see the module docstring."""
    return ResNetCIFAR(3, in_channels=in_channels, num_classes=num_classes)
