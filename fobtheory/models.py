"""The networks of the experiments, re-exported by :mod:`fobtheory.nn`: the MNIST-1D CNN and
MAML's standard image backbone, Conv4."""
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


class Conv4(nn.Module):
    """MAML's standard image backbone (Finn et al. 2017; learn2learn, torchmeta, torch.func's
    MAML example): four blocks of conv 3x3 (padding 1, ``width`` channels) - BatchNorm2d -
    ReLU - MaxPool2d(2), then a linear head to ``n_classes``.

    Inputs ``(n, channels, size, size)``, e.g. 1 x 28 x 28 (Omniglot, width 32) or
    3 x 84 x 84 (miniImageNet, width 64); each pooling floors the side, so 28 -> 1 and
    84 -> 5, and a side below 16 pools to nothing (ValueError). ``batch_norm=True`` is
    ``nn.BatchNorm2d(width)`` as users write it (affine, running statistics tracked);
    ``False`` drops the normalisation.
    """

    def __init__(self, width: int = 32, n_classes: int = 5, channels: int = 1, size: int = 28,
                 batch_norm: bool = True):
        super().__init__()
        width, n_classes, channels, size = (integer("width", width), integer("n_classes", n_classes),
                                            integer("channels", channels), integer("size", size))
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False, got {batch_norm!r}")
        if size < 16:
            raise ValueError(f"size={size} pools to nothing after four MaxPool2d(2): size must be >= 16")
        layers = []
        for i in range(4):
            layers += [nn.Conv2d(channels if i == 0 else width, width, 3, padding=1),
                       *([nn.BatchNorm2d(width)] if batch_norm else []), nn.ReLU(), nn.MaxPool2d(2)]
            size //= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * size * size, n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
