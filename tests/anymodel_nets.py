"""User-defined models for tests/test_anymodel.py, importable as ``anymodel_nets:<name>`` (tests/ is on sys.path)."""

from __future__ import annotations

from torch import nn


class TinyNet(nn.Module):
    """A conv, a GELU, a pool and a Linear head: a user's own module with a conv layer and a non-ReLU activation."""

    def __init__(self, channels: int = 3, width: int = 4, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.GELU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width, 8), nn.ReLU(), nn.Linear(8, classes))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


def make_net(width: int = 4, channels: int = 3, classes: int = 4) -> TinyNet:
    return TinyNet(channels, width, classes)


def not_a_module(width: int = 4) -> int:
    return width


NOT_CALLABLE = 3
