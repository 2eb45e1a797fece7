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
The iterates ``x_k`` are stored (K+1 parameter vectors, never an activation graph) or, with
``store_iterates=False``, recomputed from x_0.
With ``normalize=True`` the step is ``h = delta / |v|``, so the parameters move by delta.

Costs in gradient calls, K inner steps, J = 1: FO-MAML K+1, forward 2K+1 (the inner loop's
``grad f(x_k)`` are the base points), symmetric 3K+1, order p about (p+1)K+1.

**Batches of tasks** (``batched=True``): x has a leading task axis, one row per task, and
the oracles are vectorised: they take ``(m*B, ...)`` arrays that stack m groups of the B
task rows (row ``i*B + b`` belongs to task b) and return the gradients in the same layout.
Norms, the normalised step, the fixed-point test and the kink guard are then per task, and
the m points of a stencil go to the oracle in one call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import arrays
from .checks import integer, positive
from .stencils import scheme_order, stencil_for

Oracle = Callable[[Any], Any]


@dataclass
class EstimateInfo:
    """Diagnostics of one estimate (calls count oracle invocations, whatever their batch)."""

    inner_grad_calls: int = 0
    outer_grad_calls: int = 0
    fixed_point_iters: list[int] = field(default_factory=list)  # iterations used per perturbed solve
    fixed_point_residual: float = 0.0  # largest final |w_(j+1) - w_j| / |v| over the solves
    kink_retries: int = 0  # (task) steps whose step size the kink guard shrank
    kink_unresolved: int = 0  # (task) steps whose one-sided differences still disagreed

    @property
    def grad_calls(self) -> int:
        return self.inner_grad_calls + self.outer_grad_calls


class FixedPointError(ValueError):
    """The perturbed fixed point ``u = x - t grad F(phi(u))`` does not contract."""


# ---------------------------------------------------------------------------------------------
# checked oracle calls, one task or a batch of tasks


def _check_point(x, batched: bool = False):
    """``x`` as a real floating array or tensor (lists become float64 numpy arrays)."""
    if not arrays.is_tensor(x):
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            if np.issubdtype(x.dtype, np.complexfloating) or not np.issubdtype(x.dtype, np.number):
                raise ValueError(f"x must be a real floating array, got dtype {x.dtype}")
            x = x.astype(np.float64)
    elif not x.is_floating_point():
        raise ValueError(f"x must be a real floating tensor, got dtype {x.dtype}")
    if batched and (x.ndim < 1 or x.shape[0] < 1):
        raise ValueError(f"batched=True needs x with a leading task axis, got shape {tuple(x.shape)}")
    if not arrays.all_finite(x):
        raise ValueError("x must be finite: it has NaN or infinite entries")
    return x


class _Oracles:
    """The two gradient oracles with checks, call counts and the task layout.

    Per-task scalars (norms, step sizes, masks) are Python floats and bools for one task,
    and arrays of shape ``(B, 1, ..., 1)`` broadcasting against x for a batch.
    """

    def __init__(self, x, inner_grad: Oracle, outer_grad: Oracle, batched: bool, stack: bool = True):
        self.x, self.batched, self.stack = x, batched, stack
        self.oracles = {"inner_grad": inner_grad, "outer_grad": outer_grad}
        self.info = EstimateInfo()

    def inner(self, points: list, where: str) -> list:
        return self._call("inner_grad", points, where)

    def outer(self, points: list, where: str) -> list:
        return self._call("outer_grad", points, where)

    def stacks(self, n: int) -> bool:
        """Whether ``n`` points go to the oracle in one stacked call."""
        return self.batched and self.stack and n > 1

    def _call(self, name: str, points: list, where: str) -> list:
        """Gradients at ``points``: one oracle call per point, or one stacked call per batch."""
        if self.stacks(len(points)):
            stacked = arrays.namespace(points[0]).concatenate(points)
            return list(self._checked(name, stacked, where).reshape(len(points), *points[0].shape))
        return [self._checked(name, p, where) for p in points]

    def _checked(self, name: str, point, where: str):
        g = self.oracles[name](point)
        if arrays.is_tensor(point) != arrays.is_tensor(g):
            raise ValueError(f"{name} must return the input's type ({type(point).__name__}), "
                             f"got {type(g).__name__} {where}")
        if not arrays.is_tensor(g):
            g = np.asarray(g)
        if tuple(g.shape) != tuple(point.shape):
            raise ValueError(f"{name} returned shape {tuple(g.shape)} for a point of shape {tuple(point.shape)} {where}")
        if not arrays.all_finite(g):
            raise ValueError(f"{name} returned non-finite values (NaN or inf) {where}")
        if arrays.is_complex(point) and not arrays.is_complex(g):
            raise ValueError(
                f"scheme='complex' needs holomorphic oracles that accept complex input: "
                f"{name} returned a real {type(g).__name__} for a complex point {where}"
            )
        setattr(self.info, f"{name}_calls", getattr(self.info, f"{name}_calls") + 1)
        return g

    # per-task arithmetic --------------------------------------------------------------------
    def norm(self, a):
        return arrays.row_norms(a) if self.batched else arrays.norm(a)

    def where(self, mask, a, b):
        return arrays.namespace(mask).where(mask, a, b) if self.batched else (a if mask else b)

    def count(self, mask) -> int:
        return int(mask.sum()) if self.batched else int(bool(mask))

    def largest(self, values) -> float:
        """The largest of per-task values (a plain number when the value is shared)."""
        return float(values.max()) if hasattr(values, "max") else float(values)


def _inner_loop(x, oracles: _Oracles, alpha, steps: int, keep: bool, keep_grads: bool):
    """Run ``steps`` inner steps from x. Returns the last iterate, and the lists
    ``[x_0..x_{steps-1}]`` and ``[grad f(x_0)..]`` when ``keep`` / ``keep_grads`` (else empty)."""
    xs, gs = [], []
    for k in range(steps):
        (g,) = oracles.inner([x], f"at inner step {k}")
        if keep:
            xs.append(x)
        if keep_grads:
            gs.append(g)
        x = x - alpha * g
    return x, xs, gs


def _iterate(x0, k: int, oracles: _Oracles, alpha, with_grad: bool):
    """``x_k`` (and ``grad f(x_k)``) recomputed from x_0: k (+1) gradient calls, no storage."""
    xk, _, _ = _inner_loop(x0, oracles, alpha, k, keep=False, keep_grads=False)
    return xk, (oracles.inner([xk], f"at inner step {k} (recomputed)")[0] if with_grad else None)


# ---------------------------------------------------------------------------------------------
# the perturbed solve


@dataclass(frozen=True)
class _Solve:
    """How the perturbed problem of the last inner step is solved."""

    iters: int | None  # None: to tolerance
    tol: float
    max_iters: int


def _outer_direction(t, xk, v, oracles: _Oracles, alpha, solve: _Solve):
    """The direction ``w`` with ``u(t) = x_k - t w`` the J-th fixed-point iterate.

    ``w_0 = v = grad F(phi(x_k))``; ``w_{j+1} = grad F(phi(x_k - t w_j))``, so the residual
    ``|u_{j+1} - u_j| = |t| |w_{j+1} - w_j|``. Raises :class:`FixedPointError` when it stops
    shrinking above roundoff, or when ``"solve"`` does not reach its tolerance.
    """
    vnorm = oracles.norm(v)
    floor = 64 * arrays.dtype_eps(oracles.x) * vnorm
    w, previous, residual = v, vnorm, 0 * vnorm
    iters = 1
    while iters < (solve.iters or solve.max_iters):
        where = f"in the perturbed solve (iteration {iters})"
        u = xk - t * w
        (g,) = oracles.inner([u], where)
        (w_new,) = oracles.outer([u - alpha * g], where)
        change = oracles.norm(w_new - w)
        w, iters, residual = w_new, iters + 1, change / vnorm
        growing = (change > floor) & (change >= previous)
        if oracles.count(growing):
            ratio = oracles.largest(oracles.where(growing, change / previous, 0 * change))
            raise FixedPointError(
                f"the perturbed fixed point u = x - t grad F(phi(u)) diverges (|t| up to "
                f"{oracles.largest(abs(t)):.3g}): |w_(j+1) - w_j| grew at iteration {iters - 1} (contraction "
                f"ratio {ratio:.3g} >= 1). It contracts when |delta| L_F (1 + alpha L) < 1: reduce delta"
            )
        target = oracles.where(solve.tol * vnorm > floor, solve.tol * vnorm, floor)
        if solve.iters is None and not oracles.count(change > target):
            break
        previous = change
    else:
        if solve.iters is None:
            raise FixedPointError(
                f"the perturbed fixed point did not reach fixed_point_tol={solve.tol:g} in "
                f"max_fixed_point_iters={solve.max_iters} iterations (last |w_(j+1) - w_j| / |v| = "
                f"{oracles.largest(residual):.3g}); reduce delta or raise max_fixed_point_iters"
            )
    oracles.info.fixed_point_iters.append(iters)
    oracles.info.fixed_point_residual = max(oracles.info.fixed_point_residual, oracles.largest(residual))
    return w


# ---------------------------------------------------------------------------------------------
# one backward step: v -> J(x_k) v


def _stencil_step(xk, gk, v, h, stencil, oracles: _Oracles, alpha, solve, k, keep_grads: bool):
    """``sum_j c_j s_j w_j + (alpha/h) sum_j c_j grad f(x_k - s_j h w_j)`` over the stencil,
    and, with ``keep_grads``, the gradients at each offset (``grad f(x_k)`` = gk at offset 0
    is free). Stacked, the points go to the oracle in one call; otherwise each point lives
    only for its own call and the sums accumulate as they go (the peak of one gradient)."""
    moved = stencil.perturbed_offsets
    where = f"at backward step {k}"
    direction = lambda s: v if solve is None else _outer_direction(s * h, xk, v, oracles, alpha, solve)  # noqa: E731
    if oracles.stacks(len(moved)):
        directions = {s: direction(s) for s in moved}
        stacked = dict(zip(moved, oracles.inner([xk - (s * h) * directions[s] for s in moved], where)))
        at = lambda s: (directions[s], stacked[s])  # noqa: E731
    else:
        at = lambda s: (w := direction(s), oracles.inner([xk - (s * h) * w], where)[0])  # noqa: E731
    directional, total_g, grads = [], None, {}
    for s, c in zip(stencil.offsets, stencil.float_weights):
        if s:
            w, g = at(s)
            directional.append((c * s, w))  # w is v itself when J = 1: no extra memory
        else:
            g = gk
        total_g = _plus(total_g, c * g)
        if keep_grads:
            grads[s] = g
        del g  # not alive during the next point's call
    total_w = None  # summed after the calls, so that it does not occupy memory during them
    for cs, w in directional:
        total_w = _plus(total_w, cs * w)
    return total_w + (alpha / h) * total_g, grads


def _plus(total, term):
    """``total + term``, with ``None`` as an empty sum."""
    return term if total is None else total + term


def _disagreement(grads, gk, oracles: _Oracles):
    """``|D+ - D-| / |D+ + D-|/2`` of the one-sided differences ``D+ = grad f(x_k) - grad f(x_k - h v)``
    and ``D- = grad f(x_k + h v) - grad f(x_k)``: O(h) for a smooth f, O(1) when the step
    crosses an activation kink, and growing like 1/h once roundoff dominates."""
    plus, minus = gk - grads[1], grads[-1] - gk
    mean = oracles.norm(plus + minus) / 2
    return oracles.norm(plus - minus) / oracles.where(mean > 0, mean, 1e-300)


def _backward_step(xk, gk, v, delta, scheme, normalize, solve, oracles: _Oracles, alpha, k, kink_tol):
    """``D(x_k; v)``: the estimate of ``(I - alpha hess f(x_k)) v``."""
    vnorm = oracles.norm(v)
    if not oracles.count(vnorm > 0):
        return v
    h = oracles.where(vnorm > 0, delta / oracles.where(vnorm > 0, vnorm, 1), delta) if normalize else delta
    if scheme == "complex":
        t = 1j * h
        xc, vc = arrays.to_complex(xk), arrays.to_complex(v)
        w = vc if solve is None else _outer_direction(t, xc, vc, oracles, alpha, solve)
        (g,) = oracles.inner([xc - t * w], f"at backward step {k}")
        return arrays.real(w) + (alpha / h) * arrays.imag(g)
    stencil = stencil_for(scheme)
    guard = kink_tol is not None and solve is None and {-1, 1} <= set(stencil.offsets)
    out, grads = _stencil_step(xk, gk, v, h, stencil, oracles, alpha, solve, k, keep_grads=guard)
    if not guard:
        return out
    # kink guard: shrink the step tenfold while the one-sided differences disagree and the
    # disagreement keeps falling; a rising one means roundoff, so the last step is kept
    disagreement = _disagreement(grads, gk, oracles)
    pending = disagreement > kink_tol
    for _ in range(3):
        if not oracles.count(pending):
            break
        oracles.info.kink_retries += oracles.count(pending)
        h = oracles.where(pending, h / 10, h)
        retry, grads = _stencil_step(xk, gk, v, h, stencil, oracles, alpha, solve, k, keep_grads=True)
        new = _disagreement(grads, gk, oracles)
        better = pending & (new < disagreement)
        out = oracles.where(better, retry, out)
        disagreement = oracles.where(better, new, disagreement)
        pending = better & (new > kink_tol)
    oracles.info.kink_unresolved += oracles.count(disagreement > kink_tol)
    return out


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
    store_iterates: bool = True,
    batched: bool = False,
    stack_stencil: bool = True,
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
    kink_tol : if set, for central stencils with J = 1 (the kink guard): when the two
        one-sided differences, free from the inner loop's ``grad f(x_k)``, disagree by more
        than ``kink_tol`` times their mean, shrink the step tenfold, up to 3 times, while
        the disagreement falls (a rising one is roundoff: the previous step is kept).
        Counted in ``info.kink_retries`` and ``info.kink_unresolved``.
    store_iterates : keep ``x_0..x_{K-1}`` (and ``grad f(x_k)`` where a stencil or the guard
        needs it) from the inner loop: K+1 parameter vectors. ``False`` recomputes ``x_k``
        from x_0 at each backward step instead: memory flat in K for ``K(K+1)/2`` more
        gradient calls.
    batched : x holds one task per row of its leading axis; the oracles are vectorised (see
        the module docstring).
    stack_stencil : with ``batched``, evaluate the points of a stencil in one oracle call
        (faster); ``False`` calls the oracle once per point (the peak memory of one call).
    return_info : also return an :class:`EstimateInfo`.
    """
    x = _check_point(x, batched)
    alpha = positive("alpha", alpha)
    delta = positive("delta", delta)
    scheme_order(scheme)  # validates the scheme
    inner_steps = integer("inner_steps", inner_steps)
    if fixed_point_iters == "solve":
        solve = _Solve(None, positive("fixed_point_tol", fixed_point_tol),
                       integer("max_fixed_point_iters", max_fixed_point_iters, 2))
    else:
        J = integer("fixed_point_iters", fixed_point_iters)
        solve = None if J == 1 else _Solve(J, 0.0, J)
    if kink_tol is not None:
        kink_tol = positive("kink_tol", kink_tol)
    oracles = _Oracles(x, inner_grad, outer_grad, batched, stack_stencil)
    # grad f(x_k) is needed by one-sided stencils (offset 0) and by the kink guard
    base = scheme != "complex" and (0 in stencil_for(scheme).offsets or kink_tol is not None)
    xK, xs, gs = _inner_loop(x, oracles, alpha, inner_steps, keep=store_iterates, keep_grads=store_iterates and base)
    (v,) = oracles.outer([xK], f"at x_K (K={inner_steps})")
    del xK  # the backward pass needs x_0..x_{K-1} only
    for k in reversed(range(inner_steps)):
        xk, gk = (xs[k], gs[k] if base else None) if store_iterates else _iterate(x, k, oracles, alpha, base)
        step_solve = solve if k == inner_steps - 1 else None
        v = _backward_step(xk, gk, v, delta, scheme, normalize, step_solve, oracles, alpha, k, kink_tol)
    return (v, oracles.info) if return_info else v


def fo_maml(x, inner_grad: Oracle, outer_grad: Oracle, *, alpha: float, inner_steps: int = 1,
            batched: bool = False, return_info: bool = False):
    """First-order MAML: ``grad F(phi^K(x))``, the meta-gradient with the Jacobians dropped."""
    x = _check_point(x, batched)
    alpha = positive("alpha", alpha)
    inner_steps = integer("inner_steps", inner_steps)
    oracles = _Oracles(x, inner_grad, outer_grad, batched)
    xK, _, _ = _inner_loop(x, oracles, alpha, inner_steps, keep=False, keep_grads=False)
    (g,) = oracles.outer([xK], f"at x_K (K={inner_steps})")
    return (g, oracles.info) if return_info else g


def reptile(x, inner_grad: Oracle, outer_grad: Oracle, *, alpha: float, inner_steps: int = 1,
            batched: bool = False, return_info: bool = False):
    """Reptile: ``(x - U^m(x)) / (m alpha)``, U^m = m = K+1 gradient steps on ``f + F``."""
    x = _check_point(x, batched)
    alpha = positive("alpha", alpha)
    m = integer("inner_steps", inner_steps) + 1
    oracles = _Oracles(x, inner_grad, outer_grad, batched)
    u = x
    for k in range(m):
        where = f"at Reptile step {k}"
        (gf,), (gF,) = oracles.inner([u], where), oracles.outer([u], where)
        u = u - alpha * (gf + gF)
    g = (x - u) / (m * alpha)
    return (g, oracles.info) if return_info else g
