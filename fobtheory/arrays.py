"""numpy / torch neutrality: the few array operations the estimators and problems need.

The estimators never import a backend directly: they call these helpers, which dispatch
on the type of the input. torch is imported lazily, so a numpy user pays nothing for it.
"""
from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    """True for a torch.Tensor (without importing torch when the caller never did)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def namespace(x: Any):
    """The module whose functions (exp, sin, where, ...) apply to ``x``: numpy or torch."""
    if is_tensor(x):
        import torch

        return torch
    return np


def norm(x: Any) -> float:
    """Euclidean norm over all entries, as a Python float."""
    if is_tensor(x):
        import torch

        return float(torch.linalg.vector_norm(x))
    return float(np.linalg.norm(np.ravel(x)))


def row_norms(x: Any):
    """Euclidean norm of each row of the leading axis, shaped ``(B, 1, ..., 1)`` to broadcast
    against x."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    if is_tensor(x):
        import torch

        return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1).reshape(shape)
    return np.linalg.norm(np.reshape(x, (x.shape[0], -1)), axis=1).reshape(shape)


def is_shape_only(x: Any) -> bool:
    """True for a tensor without values: torch's ``meta`` device, where operations produce
    shapes, dtypes and storage sizes without arithmetic (used to measure memory exactly at
    scale, :func:`fobtheory.memory.peak_bytes`). Checks and branches that read values cannot
    run on it; the estimators route every such read through this test."""
    return is_tensor(x) and x.device.type == "meta"


def all_finite(x: Any) -> bool:
    """True when every entry is finite (real and imaginary parts for complex input); a
    shape-only tensor has no entries to read and passes."""
    if is_shape_only(x):
        return True
    if is_tensor(x):
        import torch

        # one reduction: a NaN or inf entry makes the sum non-finite; only then (or if finite
        # entries overflow the sum) is every entry tested
        return math.isfinite(abs(x.sum())) or bool(torch.isfinite(x).all())
    return bool(np.isfinite(x).all())


def is_complex(x: Any) -> bool:
    if is_tensor(x):
        return bool(x.is_complex())
    return bool(np.iscomplexobj(x))


def real(x: Any):
    return x.real if is_complex(x) else x


def imag(x: Any):
    if is_tensor(x):
        return x.imag if x.is_complex() else x * 0
    return np.imag(x)


def to_complex(x: Any):
    """``x`` viewed as a complex array of matching precision."""
    if is_tensor(x):
        import torch

        return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    return np.asarray(x, dtype=np.complex128)


def like(constant: np.ndarray, x: Any):
    """A numpy constant converted to the backend, dtype and device of ``x``.

    Complex ``x`` gets a complex constant of matching precision, so matrix products
    between the two are defined in torch too.
    """
    if is_tensor(x):
        import torch

        return torch.as_tensor(np.asarray(constant), device=x.device).to(x.dtype)
    return constant


def dtype_eps(x: Any) -> float:
    """Machine epsilon of the (real) precision of ``x``."""
    if is_tensor(x):
        import torch

        return float(torch.finfo(x.real.dtype if x.is_complex() else x.dtype).eps)
    dt = np.asarray(x).dtype
    return float(np.finfo(dt if np.issubdtype(dt, np.inexact) else np.float64).eps)
