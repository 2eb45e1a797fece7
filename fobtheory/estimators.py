"""Meta-gradient estimators that call gradient oracles only: FO-B-MAML, FO-MAML, Reptile.

Notation (see DESIGN.md): ``phi(x) = x - alpha grad f(x)``, iterates ``x_{k+1} = phi(x_k)``,
``Phi(x) = F(x_K)``, and ``grad Phi(x) = J_0 ... J_{K-1} grad F(x_K)`` with
``J_k = I - alpha hess f(x_k)``.

**FO-B-MAML.** For a direction v, the perturbed problem's solution ``y(t) = phi(u(t))`` with

    u = x - t grad F(phi(u))          (fixed point; for a linear outer loss <v, y>: u = x - t v)

satisfies ``-y'(0) = J(x) v``. The estimator approximates ``-y'(0)`` by a finite difference
of ``y`` over a stencil ``t = s_j h`` (:mod:`fobtheory.stencils`), or by the complex step
``-Im y(i h) / h``. Writing ``u_j = x - s_j h w_j`` (``w_j = v`` after one fixed-point
iteration), the difference simplifies without cancellation of x:

    -sum_j c_j y(s_j h) / h = sum_j c_j s_j w_j + (alpha / h) sum_j c_j grad f(u_j).

K inner steps run backwards: ``v_K = grad F(x_K)``, ``v_k = D_h(x_k; v_{k+1})``; only the
last step (k = K-1) has a nonlinear outer loss, so ``fixed_point_iters`` J > 1 applies there.
With ``normalize=True`` the step is ``h = delta / |v|``, so the parameters move by delta.

Costs in gradient calls, K inner steps, J = 1: FO-MAML K+1, forward 2K+1 (the inner loop's
``grad f(x_k)`` are the base points), symmetric 3K+1, order p about (p+1)K+1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import arrays
from .stencils import scheme_order, stencil_for

Oracle = Callable[[Any], Any]


@dataclass
class EstimateInfo:
    """Diagnostics of one estimate."""

    inner_grad_calls: int = 0
    outer_grad_calls: int = 0
    fixed_point_iters: list[int] = field(default_factory=list)  # iterations used per perturbed solve
    fixed_point_residual: float = 0.0  # largest final |w_(j+1) - w_j| / |v| over the solves
    kink_retries: int = 0  # times the kink guard shrank the step
    kink_unresolved: int = 0  # steps where the one-sided differences still disagreed

    @property
    def grad_calls(self) -> int:
        return self.inner_grad_calls + self.outer_grad_calls


# ---------------------------------------------------------------------------------------------
# validation


def _check_point(x):
    """``x`` as a real floating array or tensor (lists become float64 numpy arrays)."""
    if not arrays.is_tensor(x):
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            if np.issubdtype(x.dtype, np.complexfloating) or not np.issubdtype(x.dtype, np.number):
                raise ValueError(f"x must be a real floating array, got dtype {x.dtype}")
            x = x.astype(np.float64)
    elif not x.is_floating_point():
        raise ValueError(f"x must be a real floating tensor, got dtype {x.dtype}")
    if not arrays.all_finite(x):
        raise ValueError("x must be finite: it has NaN or infinite entries")
    return x


def _check_positive(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _call(oracle: Oracle, name: str, point, x, info: EstimateInfo, where: str):
    """Call a gradient oracle and check the answer's type, shape and finiteness."""
    g = oracle(point)
    if arrays.is_tensor(point) != arrays.is_tensor(g):
        raise ValueError(f"{name} must return the input's type ({type(point).__name__}), got {type(g).__name__} {where}")
    if not arrays.is_tensor(g):
        g = np.asarray(g)
    if tuple(g.shape) != tuple(x.shape):
        raise ValueError(f"{name} returned shape {tuple(g.shape)} for x of shape {tuple(x.shape)} {where}")
    if not arrays.all_finite(g):
        raise ValueError(f"{name} returned non-finite values (NaN or inf) {where}")
    if name == "inner_grad":
        info.inner_grad_calls += 1
    else:
        info.outer_grad_calls += 1
    if arrays.is_complex(point) and not arrays.is_complex(g):
        raise ValueError(
            f"scheme='complex' needs holomorphic oracles that accept complex input: "
            f"{name} returned a real {type(g).__name__} for a complex point {where}"
        )
    return g


def _inner_loop(x, inner_grad, alpha, inner_steps, info):
    """Iterates ``[x_0..x_K]`` and the gradients ``[grad f(x_0)..grad f(x_{K-1})]``."""
    xs, gs = [x], []
    for k in range(inner_steps):
        gs.append(_call(inner_grad, "inner_grad", xs[-1], x, info, f"at inner step {k}"))
        xs.append(xs[-1] - alpha * gs[-1])
    return xs, gs


# ---------------------------------------------------------------------------------------------
# the perturbed solve


class FixedPointError(ValueError):
    """The perturbed fixed point ``u = x - t grad F(phi(u))`` does not contract."""


@dataclass(frozen=True)
class _Solve:
    """How the perturbed problem of the last inner step is solved."""

    iters: int | None  # None: to tolerance
    tol: float
    max_iters: int


def _outer_direction(t, xk, v, inner_grad, outer_grad, alpha, solve: _Solve, info, x):
    """The direction ``w`` with ``u(t) = x_k - t w`` the J-th fixed-point iterate.

    ``w_0 = v = grad F(phi(x_k))``; ``w_{j+1} = grad F(phi(x_k - t w_j))``, so the residual
    ``|u_{j+1} - u_j| = |t| |w_{j+1} - w_j|``. Raises :class:`FixedPointError` when it stops
    shrinking above roundoff, or when ``"solve"`` does not reach its tolerance.
    """
    vnorm = arrays.norm(v)
    floor = 64 * arrays.dtype_eps(x) * vnorm
    w, previous, residual = v, vnorm, 0.0
    iters = 1
    while iters < (solve.iters or solve.max_iters):
        where = f"in the perturbed solve (iteration {iters})"
        u = xk - t * w
        g = _call(inner_grad, "inner_grad", u, x, info, where)
        w_new = _call(outer_grad, "outer_grad", u - alpha * g, x, info, where)
        change = arrays.norm(w_new - w)
        w, iters, residual = w_new, iters + 1, change / vnorm
        if change > floor and change >= previous:
            raise FixedPointError(
                f"the perturbed fixed point u = x - t grad F(phi(u)) diverges at t={complex(t):.3g}: "
                f"|w_(j+1) - w_j| grew from {previous:.3g} to {change:.3g} (contraction ratio "
                f"{change / previous:.3g} >= 1). It contracts when |delta| L_F (1 + alpha L) < 1: reduce delta"
            )
        if solve.iters is None and change <= max(solve.tol * vnorm, floor):
            break
        previous = change
    else:
        if solve.iters is None:
            raise FixedPointError(
                f"the perturbed fixed point did not reach fixed_point_tol={solve.tol:g} in "
                f"max_fixed_point_iters={solve.max_iters} iterations (last |w_(j+1) - w_j| / |v| = "
                f"{residual:.3g}); reduce delta or raise max_fixed_point_iters"
            )
    info.fixed_point_iters.append(iters)
    info.fixed_point_residual = max(info.fixed_point_residual, residual)
    return w


# ---------------------------------------------------------------------------------------------
# one backward step: v -> J(x_k) v


def _real_step(xk, gk, v, h, offsets, weights, directions, inner_grad, alpha, info, x, k):
    """``sum_j c_j s_j w_j + (alpha/h) sum_j c_j grad f(x_k - s_j h w_j)`` over the stencil."""
    total_w = 0 * v
    total_g = 0 * v
    grads = {}
    for s, c, w in zip(offsets, weights, directions):
        if s == 0:
            grads[s] = gk
        else:
            grads[s] = _call(inner_grad, "inner_grad", xk - (s * h) * w, x, info, f"at backward step {k}")
            total_w = total_w + (c * s) * w
        total_g = total_g + c * grads[s]
    return total_w + (alpha / h) * total_g, grads


def _one_sided_disagree(grads, gk, tol) -> bool:
    """Kink test: the two one-sided differences ``grad f(x_k -+ h v) - grad f(x_k)`` of a
    smooth f agree to O(h); across an activation kink they differ by O(1)."""
    plus, minus = gk - grads[1], grads[-1] - gk
    scale = arrays.norm(plus + minus) / 2
    return arrays.norm(plus - minus) > tol * max(scale, 1e-300)


def _backward_step(xk, gk, v, delta, scheme, normalize, solve, inner_grad, outer_grad, alpha, info, x, k, kink_tol):
    """``D(x_k; v)``: the estimate of ``(I - alpha hess f(x_k)) v``."""
    vnorm = arrays.norm(v)
    if vnorm == 0:
        return v
    h = delta / vnorm if normalize else delta
    if scheme == "complex":
        t = 1j * h
        xc, vc = arrays.to_complex(xk), arrays.to_complex(v)
        w = vc if solve is None else _outer_direction(t, xc, vc, inner_grad, outer_grad, alpha, solve, info, x)
        g = _call(inner_grad, "inner_grad", xc - t * w, x, info, f"at backward step {k}")
        return arrays.real(w) + (alpha / h) * arrays.imag(g)
    stencil = stencil_for(scheme)
    offsets, weights = stencil.offsets, stencil.float_weights
    guard = kink_tol is not None and solve is None and -1 in offsets and 1 in offsets
    retries = 0
    while True:
        if solve is None:
            directions = [v] * len(offsets)
        else:
            directions = [
                v if s == 0 else _outer_direction(s * h, xk, v, inner_grad, outer_grad, alpha, solve, info, x)
                for s in offsets
            ]
        out, grads = _real_step(xk, gk, v, h, offsets, weights, directions, inner_grad, alpha, info, x, k)
        if not guard or not _one_sided_disagree(grads, gk, kink_tol):
            return out
        if retries == 3:
            info.kink_unresolved += 1
            return out
        retries += 1
        info.kink_retries += 1
        h = h / 10


# ---------------------------------------------------------------------------------------------
# public estimators


def fob_maml(
    x,
    inner_grad: Oracle,
    outer_grad: Oracle,
    *,
    alpha: float,
    delta: float,
    scheme="symmetric",
    inner_steps: int = 1,
    fixed_point_iters: int | str = 1,
    normalize: bool = False,
    fixed_point_tol: float = 1e-14,
    max_fixed_point_iters: int = 100,
    kink_tol: float | None = None,
    return_info: bool = False,
):
    """FO-B-MAML estimate of ``grad Phi(x)`` from gradient oracles only.

    Parameters
    ----------
    x : numpy array or torch tensor (any shape, real floating); the answer has its type.
    inner_grad, outer_grad : gradients of f and F, called on arrays shaped like x.
    alpha : inner step (> 0).
    delta : perturbation size (> 0): the step h of the difference, or with ``normalize``
        the norm of the parameter displacement (``h = delta / |v|``).
    scheme : ``"forward"`` (bias O(delta)), ``"symmetric"`` (O(delta^2)), an integer order p
        (central stencil for even p, one-sided for odd p; O(delta^p)), or ``"complex"``
        (complex step ``-Im y(i delta) / delta``: O(delta^2) without subtractive cancellation;
        the oracles must be holomorphic and accept complex input).
    inner_steps : K >= 1.
    fixed_point_iters : J >= 1 iterations of ``u = x - t grad F(phi(u))`` at the last inner
        step (J = 1 is the cheapest and already consistent), or ``"solve"`` to iterate until
        ``|w_{j+1} - w_j| <= fixed_point_tol |v|``.
    kink_tol : if set, for central stencils with J = 1: when the two one-sided differences
        disagree by more than ``kink_tol`` times their mean, shrink the step tenfold (up to 3
        times). Counted in ``info.kink_retries``.
    return_info : also return an :class:`EstimateInfo`.
    """
    x = _check_point(x)
    alpha = _check_positive("alpha", alpha)
    delta = _check_positive("delta", delta)
    scheme_order(scheme)  # validates the scheme
    inner_steps = _check_int("inner_steps", inner_steps)
    if fixed_point_iters == "solve":
        solve = _Solve(None, _check_positive("fixed_point_tol", fixed_point_tol),
                       _check_int("max_fixed_point_iters", max_fixed_point_iters, 2))
    else:
        J = _check_int("fixed_point_iters", fixed_point_iters)
        solve = None if J == 1 else _Solve(J, 0.0, J)
    if kink_tol is not None:
        kink_tol = _check_positive("kink_tol", kink_tol)
    info = EstimateInfo()
    xs, gs = _inner_loop(x, inner_grad, alpha, inner_steps, info)
    v = _call(outer_grad, "outer_grad", xs[-1], x, info, f"at x_K (K={inner_steps})")
    for k in reversed(range(inner_steps)):
        step_solve = solve if k == inner_steps - 1 else None
        v = _backward_step(xs[k], gs[k], v, delta, scheme, normalize, step_solve,
                           inner_grad, outer_grad, alpha, info, x, k, kink_tol)
    return (v, info) if return_info else v


def fo_maml(x, inner_grad: Oracle, outer_grad: Oracle, *, alpha: float, inner_steps: int = 1, return_info: bool = False):
    """First-order MAML: ``grad F(phi^K(x))``, the meta-gradient with the Jacobians dropped."""
    x = _check_point(x)
    alpha = _check_positive("alpha", alpha)
    inner_steps = _check_int("inner_steps", inner_steps)
    info = EstimateInfo()
    xs, _ = _inner_loop(x, inner_grad, alpha, inner_steps, info)
    g = _call(outer_grad, "outer_grad", xs[-1], x, info, f"at x_K (K={inner_steps})")
    return (g, info) if return_info else g


def reptile(x, inner_grad: Oracle, outer_grad: Oracle, *, alpha: float, inner_steps: int = 1, return_info: bool = False):
    """Reptile: ``(x - U^m(x)) / (m alpha)``, U^m = m = K+1 gradient steps on ``f + F``."""
    x = _check_point(x)
    alpha = _check_positive("alpha", alpha)
    m = _check_int("inner_steps", inner_steps) + 1
    info = EstimateInfo()
    u = x
    for k in range(m):
        where = f"at Reptile step {k}"
        u = u - alpha * (_call(inner_grad, "inner_grad", u, x, info, where) + _call(outer_grad, "outer_grad", u, x, info, where))
    g = (x - u) / (m * alpha)
    return (g, info) if return_info else g
