"""Small CNNs whose blocks cover the structures a channel-pruning pass must get right.

* :class:`TinyResNet`: residual bottlenecks (1x1 -> 3x3 -> 1x1, identity and projection shortcuts), so
  the last conv of each block is coupled to the residual stream.
* :class:`TinyMobileNetV2`: inverted residuals with depthwise convs (groups == channels) and a
  squeeze-excite gate, plus a ShuffleNet unit (channel split, grouped 1x1 conv, concat, channel shuffle by
  view/transpose) that scatters channels across groups.
* :class:`TinySegNet`: an encoder-decoder with ``ConvTranspose2d`` upsampling, a concatenated skip and
  GroupNorm.

All take ``[N, 3, 32, 32]`` images and are a few thousand parameters, so a test traces one in well under
a second.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Bottleneck", "InvertedResidual", "SqueezeExcite", "ShuffleUnit", "TinyResNet", "TinyMobileNetV2",
           "TinySegNet"]


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(nn.Module):
    """ResNet bottleneck: ``relu(x' + conv1x1(relu(conv3x3(relu(conv1x1(x))))))``."""

    def __init__(self, cin: int, width: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, width), nn.ReLU(), *_conv_bn(width, width, 3, stride), nn.ReLU(), *_conv_bn(width, cout)
        )
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if (stride != 1 or cin != cout) else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """Channel gate: ``x * hardsigmoid(fc2(relu(fc1(avgpool(x)))))`` with 1x1 convs as the FCs."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(channels, reduced, 1), nn.Conv2d(reduced, channels, 1)
        self.act, self.gate = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: expand 1x1, depthwise 3x3, optional squeeze-excite, project 1x1, residual."""

    def __init__(self, cin: int, expanded: int, cout: int, stride: int = 1, se: bool = False):
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(cin, expanded), nn.ReLU6(),
                                   *_conv_bn(expanded, expanded, 3, stride, groups=expanded), nn.Hardswish()]
        if se:
            layers.append(SqueezeExcite(expanded, max(expanded // 4, 4)))
        layers += _conv_bn(expanded, cout)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split channels in two, transform one half (grouped 1x1, depthwise 3x3), concat,
    then shuffle channels so the next unit's halves mix both."""

    def __init__(self, channels: int, groups: int = 2):
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(*_conv_bn(half, half, 1, groups=groups), nn.ReLU(),
                                    *_conv_bn(half, half, 3, groups=half), *_conv_bn(half, half), nn.ReLU())
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, change = x.chunk(2, dim=1)
        out = torch.cat([keep, self.branch(change)], dim=1)
        n, c, h, w = out.shape
        return out.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class TinyResNet(nn.Module):
    """Stem (7x7 conv, BN, ReLU, max-pool), two bottleneck stages, global pool, linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layer1 = nn.Sequential(Bottleneck(width, width, 4 * width), Bottleneck(4 * width, width, 4 * width))
        self.layer2 = nn.Sequential(Bottleneck(4 * width, 2 * width, 8 * width, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyMobileNetV2(nn.Module):
    """Stem, inverted residuals (one with squeeze-excite), a shuffle unit, a 1x1 head, dropout, classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(3, 8, 3, 2), nn.ReLU6(),
            InvertedResidual(8, 16, 8),
            InvertedResidual(8, 24, 16, stride=2, se=True),
            InvertedResidual(16, 32, 16, se=True),
            ShuffleUnit(16),
            *_conv_bn(16, 32), nn.Hardswish(),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(x)


class TinySegNet(nn.Module):
    """Encoder-decoder: strided convs down, ConvTranspose2d up, a concatenated skip, GroupNorm, 1x1 head."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.GroupNorm(2, 8), nn.SiLU())
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.LeakyReLU(0.1))
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, 1, 1), nn.GELU(), nn.AvgPool2d(2), nn.Upsample(scale_factor=2))
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc1(x)
        up = self.up(self.enc2(skip))
        return self.head(self.dec(torch.cat([up, skip], dim=1)))
