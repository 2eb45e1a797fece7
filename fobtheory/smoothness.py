"""(L0, L1)-smoothness probe: measure |hess Phi|_2 against |grad Phi| and fit the envelope.

A function is (L0, L1)-smooth when ``|hess Phi(x)|_2 <= L0 + L1 |grad Phi(x)|`` everywhere.
For the one-step MAML objective of a task (the docs' Theory page, "(L0, L1)-smoothness") theory gives
``L0 = (1 + aL)^2 L_F`` and ``L1 = a rho / (1 - aL)``; quadratic tasks have ``L1 = 0``.

The probe samples points ``c + r u`` on random rays (``u`` uniform on the unit sphere) at
growing radii ``r``, measures both norms there, and fits the **least envelope**

    minimise  mean_i (L0 + L1 g_i - h_i)   over L0, L1 >= 0
    subject to          L0 + L1 g_i >= h_i   for every sampled point i

(``g_i = |grad Phi|``, ``h_i = |hess Phi|_2``): the covering line with the least mean gap
above the points, a linear program (``scipy.optimize.linprog``). Its solution is minimal:
lowering either constant uncovers a point.

Two sources of derivatives: closed forms of :mod:`fobtheory.problems` (``meta_grad`` and
``meta_hessian``, exact spectral norm), or any twice-differentiable scalar torch function of
a flat parameter vector (gradient and Hessian-vector products by autograd, spectral norm by
ARPACK's Lanczos iteration to a stated tolerance, :func:`spectral_norm`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from scipy.optimize import linprog

# ---------------------------------------------------------------------------------------------
# the envelope


@dataclass(frozen=True)
class EnvelopeFit:
    """The least envelope ``|hess| <= L0 + L1 |grad|`` over ``n_points`` sampled points."""

    L0: float
    L1: float
    n_points: int
    max_grad: float  # largest sampled |grad Phi|
    max_hess: float  # largest sampled |hess Phi|

    @property
    def relative_L1(self) -> float:
        """``L1 max|grad| / max|hess|``: the L1 term at the largest sampled gradient relative
        to the largest sampled |hess| (0 for an L-smooth fit, above 1 when it dominates)."""
        return self.L1 * self.max_grad / self.max_hess if self.max_hess > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "relative_L1": self.relative_L1}


def _check_norms(grad_norms, hess_norms) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(grad_norms, dtype=float).ravel()
    h = np.asarray(hess_norms, dtype=float).ravel()
    if g.shape != h.shape or g.size == 0:
        raise ValueError(f"grad_norms and hess_norms must be non-empty and of one length, got {g.size} and {h.size}")
    if not (np.isfinite(g).all() and np.isfinite(h).all()) or (g < 0).any() or (h < 0).any():
        raise ValueError("grad_norms and hess_norms must be finite and >= 0")
    return g, h


def fit_envelope(grad_norms, hess_norms) -> EnvelopeFit:
    """The least envelope (module docstring) by linear programming.

    The LP runs on the scaled variables ``L0 / max h`` and ``L1 max g / max h`` (all
    coefficients in [0, 1]); afterwards L0 is set to ``max_i (h_i - L1 g_i)``, moved up by
    the few ulps that make ``h_i <= L0 + L1 g_i`` hold exactly in floating point (the
    solver's feasibility tolerance is about 1e-9 relative; this repair is no larger).
    """
    g, h = _check_norms(grad_norms, hess_norms)
    gs, hs = max(g.max(), np.finfo(float).tiny), max(h.max(), np.finfo(float).tiny)
    G, H = g / gs, h / hs
    # a tie-breaking weight keeps the objective positive in L1 when every g_i is 0
    cost = [1.0, max(G.mean(), 1e-12)]
    res = linprog(cost, A_ub=-np.column_stack([np.ones_like(G), G]), b_ub=-H,
                  bounds=[(0, None), (0, None)], method="highs")
    if res.status != 0:  # pragma: no cover - the LP is always feasible and bounded
        raise RuntimeError(f"envelope LP failed: {res.message}")
    L1 = float(res.x[1] * hs / gs)
    L0 = max(float(np.max(h - L1 * g)), 0.0)
    while not covered(g, h, L0, L1, rtol=0).all():
        L0 = float(np.nextafter(L0, math.inf))
    return EnvelopeFit(L0, L1, int(g.size), float(g.max()), float(h.max()))


def covered(grad_norms, hess_norms, L0: float, L1: float, rtol: float = 1e-12) -> np.ndarray:
    """Boolean mask of the points with ``h <= (L0 + L1 g)(1 + rtol)``."""
    g, h = _check_norms(grad_norms, hess_norms)
    return h <= (L0 + L1 * g) * (1 + rtol)


# ---------------------------------------------------------------------------------------------
# sampling


def ray_points(dim: int, radii, n_rays: int, *, center=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points ``center + r u`` on ``n_rays`` rays and at each radius r. The directions u are
    uniform on the unit sphere and come in opposite pairs ``+-u`` (so that a 1-D probe sees
    both sides). Returns ``(points, radius)`` of shapes ``(n_rays * len(radii), dim)`` and
    ``(n_rays * len(radii),)``, ray-major."""
    radii = np.asarray(radii, dtype=float).ravel()
    if dim < 1 or n_rays < 1 or radii.size == 0 or (radii < 0).any():
        raise ValueError(f"need dim >= 1, n_rays >= 1 and radii >= 0, got {dim}, {n_rays}, {radii}")
    u = np.random.default_rng(seed).standard_normal(((n_rays + 1) // 2, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u = np.concatenate([u, -u])[:n_rays]
    c = np.zeros(dim) if center is None else np.asarray(center, dtype=float)
    points = c + (u[:, None, :] * radii[None, :, None]).reshape(-1, dim)
    return points, np.tile(radii, n_rays)


# ---------------------------------------------------------------------------------------------
# closed forms


def task_norms(task, points, inner_steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``|grad Phi|`` and exact ``|hess Phi|_2`` (largest singular value) of one task at
    each point, from its closed forms."""
    g = np.array([np.linalg.norm(task.meta_grad(x, inner_steps)) for x in points])
    h = np.array([np.linalg.norm(task.meta_hessian(x, inner_steps), 2) for x in points])
    return g, h


def theory_constants(problem) -> tuple[float, float]:
    """Theory's ``(L0, L1)`` for one step, worst case over the tasks of a MetaProblem (or of
    a single task): every task's Phi_i satisfies the bound with them."""
    if hasattr(problem, "constants"):
        c = problem.constants()
        return c["L0"], c["L1"]
    return problem.smoothness_constants()


# ---------------------------------------------------------------------------------------------
# Hessian-vector products


def spectral_norm(matvec: Callable[[np.ndarray], np.ndarray], dim: int, *, tol: float = 1e-10,
                  max_iters: int | None = None, seed: int = 0) -> float:
    """``|H|_2 = max |eigenvalue|`` of a symmetric operator given by ``matvec``:
    ``scipy.sparse.linalg.eigsh`` (ARPACK's implicitly restarted Lanczos) on a
    ``LinearOperator``, ``k=1, which="LM"``, from a random start (``seed``).

    ARPACK stops when the Ritz pair ``(theta, q)`` has residual ``|H q - theta q| <= tol |theta|``
    (for symmetric H an eigenvalue then lies within ``tol |theta|`` of theta). ``max_iters``
    bounds ARPACK's restarts (eigsh's ``maxiter``, default ``10 dim``); RuntimeError if not
    converged. Two cases ARPACK cannot take: ``dim <= 2`` (it needs ``k < dim`` and a Krylov
    space larger than k) is solved densely from ``dim`` products, and the zero operator
    (ARPACK refuses a zero residual) returns 0.
    """
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

    if dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim}")
    if dim <= 2:
        H = np.column_stack([np.asarray(matvec(e), dtype=float) for e in np.eye(dim)])
        return float(np.abs(np.linalg.eigvalsh((H + H.T) / 2)).max())
    v0 = np.random.default_rng(seed).standard_normal(dim)
    op = LinearOperator((dim, dim), matvec=lambda v: np.asarray(matvec(v), dtype=float), dtype=float)
    try:
        theta = eigsh(op, k=1, which="LM", tol=tol, maxiter=max_iters, v0=v0, return_eigenvectors=False)
    except ArpackNoConvergence as err:
        raise RuntimeError(f"eigsh did not reach tol={tol:g} in max_iters={max_iters} restarts: "
                           "raise max_iters or tol") from err
    except ArpackError as err:
        if not np.asarray(matvec(v0)).any():  # ARPACK's "starting vector is zero": H v0 = 0, so H = 0
            return 0.0
        raise
    return float(abs(theta[0]))


def torch_norms(fn, points, *, tol: float = 1e-10, max_iters: int | None = None, seed: int = 0,
                dtype=None, device=None) -> tuple[np.ndarray, np.ndarray]:
    """``|grad fn|`` and ``|hess fn|_2`` at each point for a twice-differentiable scalar torch
    function ``fn`` of a flat parameter vector: autograd gradient, Hessian-vector products
    by double backward, spectral norm by :func:`spectral_norm` (tolerance ``tol``)."""
    import torch

    dtype = dtype or torch.float64
    grads, hess = [], []
    for x in points:
        x = torch.as_tensor(np.asarray(x), dtype=dtype, device=device).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(fn(x), x, create_graph=True)

        def hvp(v, g=g, x=x):
            v = torch.as_tensor(v, dtype=dtype, device=device)
            return torch.autograd.grad(g, x, v, retain_graph=True)[0].detach().cpu().numpy()

        grads.append(float(torch.linalg.vector_norm(g.detach())))
        hess.append(spectral_norm(hvp, x.numel(), tol=tol, max_iters=max_iters, seed=seed))
    return np.array(grads), np.array(hess)
