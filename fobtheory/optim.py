"""Meta-optimizers for (L0, L1)-smooth objectives, as ``torch.optim.Optimizer`` subclasses.

With ``g`` the gradient of a parameter group and ``|g|`` its Euclidean norm **over the whole
group** (all its tensors flattened into one vector, as in the theory, which normalizes the
full gradient; put tensors in separate groups to normalize them separately):

    ClippedSGD     x <- x - lr min(1, clip / |g|) g
    NormalizedSGD  x <- x - lr g / |g|
    SNGDM          m <- beta m + (1 - beta) g,   x <- x - lr m / |m|     (m starts at 0)

SNGDM is normalized SGD with momentum (Cutkosky & Mehta, "Momentum improves normalized
SGD", ICML 2020); ``beta = 0`` gives NormalizedSGD. A zero gradient (or momentum) gives a
zero step: ``g / |g|`` is read as 0 when ``|g| = 0``, never as a division by zero; norms
are taken after dividing by the largest entry, so tiny or huge gradients neither under- nor
overflow.
Parameters whose ``.grad`` is None are skipped and do not count in the norm, as in
``torch.optim.SGD``. Steps run under ``torch.no_grad`` and never synchronise with the host.
"""
from __future__ import annotations

import math

import torch

__all__ = ["ClippedSGD", "NormalizedSGD", "SNGDM"]

# hyper-parameter -> (test on a finite float, interval shown in the error)
_POSITIVE = (lambda v: v > 0, "(0, inf)")
_RULES = {"lr": _POSITIVE, "clip": _POSITIVE, "beta": (lambda v: 0 <= v < 1, "[0, 1)")}


def _validate(name: str, value) -> None:
    ok, interval = _RULES[name]
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and ok(v)):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def _scaled(tensors):
    """``(u, s, n)``: the tensors divided by their largest entry s = max|t| (u = t when all
    are zero) and the Euclidean norm n = |u| of the group flattened into one vector, so that
    ``|g| = s n`` with ``n`` in [1, sqrt(size)] or 0: no square under- or overflows, for
    any finite gradient."""
    s = torch.stack([t.abs().amax() for t in tensors]).amax()
    u = [t / torch.where(s > 0, s, 1.0) for t in tensors]
    n = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in u]))
    return u, s, n


def _inverse_or_zero(n: torch.Tensor) -> torch.Tensor:
    """``1 / n``, and 0 where ``n = 0`` (so that ``0 / |0|`` is a zero step)."""
    return torch.where(n > 0, n.reciprocal(), 0.0)


class _GroupStep(torch.optim.Optimizer):
    """Shared machinery: validated hyper-parameters, closures, the step ``x <- x - lr s d``.

    Subclasses implement ``_direction(group, params) -> (tensors d, scalar tensor s)``.
    """

    def __init__(self, params, **defaults):
        for name, value in defaults.items():
            _validate(name, value)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        for name in self.defaults:
            _validate(name, param_group.get(name, self.defaults[name]))
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter group; ``closure`` re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            directions, scale = self._direction(group, params)
            for p, d in zip(params, directions):
                p.addcmul_(d, scale, value=-group["lr"])
        return loss

    def _direction(self, group, params):
        raise NotImplementedError


class ClippedSGD(_GroupStep):
    """Clipped SGD: ``x <- x - lr min(1, clip / |g|) g``, |g| the norm over the group."""

    def __init__(self, params, lr: float, clip: float = 1.0):
        super().__init__(params, lr=lr, clip=clip)

    def _direction(self, group, params):
        u, s, n = _scaled([p.grad for p in params])
        return u, torch.minimum(s, group["clip"] / n)  # min(1, clip / |g|) g = min(s, clip / n) u


class NormalizedSGD(_GroupStep):
    """Normalized SGD: ``x <- x - lr g / |g|`` (a zero gradient gives a zero step)."""

    def __init__(self, params, lr: float):
        super().__init__(params, lr=lr)

    def _direction(self, group, params):
        u, _, n = _scaled([p.grad for p in params])
        return u, _inverse_or_zero(n)


class SNGDM(_GroupStep):
    """Normalized SGD with momentum: ``m <- beta m + (1 - beta) g; x <- x - lr m / |m|``.

    The momentum buffer (``state[p]["momentum_buffer"]``, saved by ``state_dict``) starts at
    zero, so the first step is ``-lr g / |g|``.
    """

    def __init__(self, params, lr: float, beta: float = 0.9):
        super().__init__(params, lr=lr, beta=beta)

    def _direction(self, group, params):
        beta = group["beta"]
        buffers = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buffers.append(state["momentum_buffer"].mul_(beta).add_(p.grad, alpha=1 - beta))
        u, _, n = _scaled(buffers)
        return u, _inverse_or_zero(n)
