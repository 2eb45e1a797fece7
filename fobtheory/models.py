"""The networks of the experiments: the MNIST-1D CNN (and, re-exported by
:mod:`fobtheory.nn`, the backbones users meta-train)."""
from __future__ import annotations

from torch import nn

from .checks import integer

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "softplus": nn.Softplus, "tanh": nn.Tanh}


class CNN1D(nn.Module):
    """The MNIST-1D reference CNN, widened and deepened on demand.

    ``depth`` Conv1d layers of ``width`` channels (kernel 5 then 3, padding 1; the first
    three with stride 2, the rest with stride 1 so that deeper nets keep their activation
    length), each followed by ``activation``, then a linear classifier.
    """

    def __init__(self, width: int = 25, depth: int = 3, activation: str = "relu", n_classes: int = 5,
                 length: int = 40):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        width, depth, n_classes, length = (integer("width", width), integer("depth", depth),
                                           integer("n_classes", n_classes), integer("length", length))
        layers, channels = [], 1
        for i in range(depth):
            kernel, stride = (5 if i == 0 else 3), (2 if i < 3 else 1)
            layers += [nn.Conv1d(channels, width, kernel, stride=stride, padding=1), ACTIVATIONS[activation]()]
            channels = width
            length = (length + 2 - kernel) // stride + 1
            if length < 1:
                raise ValueError(f"depth={depth} shrinks the signal to nothing; use a longer input or fewer layers")
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * length, n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
