"""Frozen activation patterns: the smooth piece of a piecewise-smooth network at an anchor.

A network with ReLU-like activations or max-pooling is piecewise smooth in its parameters:
where the *activation pattern* P (the side of every kink that each pre-activation is on,
the argmax of every pooling window) is constant, the loss equals a smooth ``L_P``. Autograd's
Hessian-vector product, which second-order MAML uses, is ``hess L_P(x) v`` with P = P(x).
A finite difference of gradients at ``x +- h v`` compares two pieces as soon as one unit
flips inside the step; evaluating both gradients with the pattern of the anchor x instead
is the finite difference of ``L_P`` itself (the docs' Theory page, "Frozen activation patterns").

:class:`PatternHooks` does this with forward hooks on the kinked modules of a model:

- ``record`` mode stores each kinked module's pattern (one tensor per module call) from the
  forward pass at the anchor;
- ``replay`` mode replaces each kinked module's output by the same piece evaluated at the
  current input ``z'``, with the recorded pattern of the anchor:

  ====================  ===================================  =================================
  module                pattern of the anchor's input z      frozen output at z'
  ====================  ===================================  =================================
  ReLU                  m = z > 0                            m z'
  LeakyReLU(s), PReLU   m = z > 0                            where(m, z', s z')
  Hardtanh(a, b),       c = 0 (z <= a), 1 (a < z < b),       a, z', b by c
  ReLU6 (a=0, b=6)      2 (z >= b)
  MaxPool1d/2d          the argmax indices of every window   z' at those indices
  ====================  ===================================  =================================

Hooks work under ``torch.func.functional_call``, ``vmap`` and ``grad``: patterns recorded
under ``vmap`` come out batched, and are passed back in as arguments of the replaying
function. In-place modules (``ReLU(inplace=True)``) get a copy of their input.

Any other kink (``F.relu`` called in a forward, ``torch.abs``, ``x.clamp()``, ...) is not
frozen. ``PatternHooks.find_unfrozen`` runs a forward pass under a ``TorchFunctionMode``
that notes every call of a kinked torch function made outside the frozen modules. The estimators'
``kink_check`` counts the steps where such a kink actually shows.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

FROZEN_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.PReLU, nn.MaxPool1d, nn.MaxPool2d)  # ReLU6 is a Hardtanh


# torch functions (and Tensor methods) whose value or gradient jumps somewhere
KINKED_FUNCTIONS = frozenset({
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "hardtanh", "hardtanh_", "prelu", "rrelu", "threshold",
    "abs", "abs_", "absolute", "clamp", "clamp_", "clip", "clamp_min", "clamp_max", "maximum", "minimum", "max", "min",
    "fmax", "fmin", "amax", "amin", "sign", "floor", "ceil", "round", "trunc", "frac", "where", "hardswish",
    "hardsigmoid", "hardshrink", "softshrink", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "sort", "topk", "kthvalue", "median", "nanmedian", "cummax", "cummin",
})


def kinked_modules(model: nn.Module) -> list[nn.Module]:
    """The submodules whose kinks :class:`PatternHooks` freezes."""
    return [m for m in model.modules() if isinstance(m, FROZEN_MODULES)]


def _pool(module, z):
    """``(output, indices)`` of a max-pooling module at z."""
    pool = F.max_pool1d if isinstance(module, nn.MaxPool1d) else F.max_pool2d
    return pool(z, module.kernel_size, module.stride, module.padding, module.dilation,
                ceil_mode=module.ceil_mode, return_indices=True)


def pattern_of(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The pattern of ``module``'s input z (see the table above; LeakyReLU's is stored as the
    slope of each unit's piece, 1 or s, so that its frozen output is one product)."""
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        return _pool(module, z)[1]
    if isinstance(module, nn.Hardtanh):
        return (z > module.min_val).to(torch.uint8) + (z >= module.max_val).to(torch.uint8)
    if isinstance(module, nn.LeakyReLU):  # the slope in z's precision (a float32 0.01 is off by 2e-8)
        return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, module.negative_slope))
    return z > 0


def frozen(module: nn.Module, z: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """``module``'s piece selected by ``pattern``, evaluated at z (products where possible:
    they are cheaper than ``where`` and save only the pattern for the backward pass)."""
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        spatial = 1 if isinstance(module, nn.MaxPool1d) else 2
        flat_z, flat_i = z.flatten(-spatial), pattern.flatten(-spatial)
        return flat_z.gather(-1, flat_i).view(pattern.shape)
    if isinstance(module, nn.Hardtanh):
        constant = (pattern == 0) * module.min_val + (pattern == 2) * module.max_val
        return z * (pattern == 1) + constant.to(z.dtype)
    if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
        return z * pattern
    weight = module.weight  # PReLU: one slope, or one per channel (dimension 1 of a batch)
    if weight.numel() > 1:
        weight = weight.reshape(-1, *[1] * (z.dim() - 2))
    return torch.where(pattern, z, weight * z)


class _UnfrozenKinks(TorchFunctionMode):
    """Notes the kinked torch functions called while ``hooks`` is not inside a frozen module."""

    def __init__(self, hooks: "PatternHooks"):
        super().__init__()
        self.hooks = hooks

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in KINKED_FUNCTIONS and not self.hooks._inputs:
            self.hooks.unfrozen.add(name)
        return func(*args, **(kwargs or {}))


class PatternHooks:
    """Forward hooks that record or replay the activation patterns of a model's kinked modules.

    ``with PatternHooks(model) as hooks:`` registers them (removed on exit); inside,
    ``hooks.recording()`` and ``hooks.replaying(patterns)`` are context managers for one
    forward pass each; outside both the hooks do nothing. Patterns are in module-call order.
    ``find_unfrozen`` names the kinked functions that a forward pass calls outside them.
    """

    def __init__(self, model: nn.Module):
        self.modules = kinked_modules(model)
        self.unfrozen: set[str] = set()
        self._handles = []
        self._mode = None
        self._patterns: list = []
        self._inputs: list = []  # the inputs of the frozen modules being called (a stack)

    def __enter__(self):
        self._handles = [h for m in self.modules for h in (m.register_forward_pre_hook(self._pre_hook),
                                                           m.register_forward_hook(self._hook))]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextmanager
    def recording(self):
        """Collect the patterns of one forward pass into the yielded list."""
        self._mode, self._patterns = "record", []
        try:
            yield self._patterns
        finally:
            self._mode = None

    def find_unfrozen(self, forward) -> list[str]:
        """Run ``forward()`` (a forward pass of the model) once, recording, and return the
        sorted names of the kinked functions it calls outside the frozen modules."""
        with torch.no_grad(), self.recording(), _UnfrozenKinks(self):
            forward()
        return sorted(self.unfrozen)

    @contextmanager
    def replaying(self, patterns):
        """Evaluate one forward pass with ``patterns`` (from :meth:`recording`) frozen."""
        self._mode, self._patterns = "replay", list(patterns)
        try:
            yield
            if self._patterns:
                raise ValueError(f"{len(self._patterns)} recorded activation patterns were not used: the forward "
                                 "pass calls its kinked modules differently from the recorded one")
        finally:
            self._mode = None

    def _pre_hook(self, module, inputs):
        if self._mode is None:
            return None
        self._inputs.append(inputs[0])
        if getattr(module, "inplace", False):  # keep z: the module overwrites its input
            return (inputs[0].clone(), *inputs[1:])
        return None

    def _hook(self, module, inputs, output):
        if self._mode is None:
            return None
        try:  # z stays on the stack meanwhile: the pattern's own kinked calls are not "unfrozen"
            z = self._inputs[-1]
            if self._mode == "record":
                self._patterns.append(pattern_of(module, z))
                return None
            if not self._patterns:
                raise ValueError("the forward pass calls more kinked modules than the recorded one")
            pattern = self._patterns.pop(0)
            out = frozen(module, z, pattern)
            return (out, pattern) if isinstance(output, tuple) else out
        finally:
            self._inputs.pop()
