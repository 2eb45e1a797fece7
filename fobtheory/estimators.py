"""Meta-gradient estimators on oracles: FO-B-MAML, FO-MAML, Reptile (gradients only), and
the exact references HVP-MAML and HF-MAML (Hessian-vector products, exact or by differences).

Notation (the docs' Theory page derives it): ``phi(x) = x - alpha grad f(x)``, iterates ``x_{k+1} = phi(x_k)``,
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

**HVP-MAML** (:func:`maml_hvp`) runs the same backward recursion with an exact
Hessian-vector oracle, ``v_k = v_{k+1} - alpha H_k v_{k+1}`` (``H_k = hess f(x_k)``): the
exact meta-gradient, with the iterates stored, checkpointed or recomputed as FO-B's are.
**HF-MAML** (:func:`hf_maml`, Fallah, Mokhtari and Ozdaglar 2019) replaces each ``H_k v`` by
the central difference ``(grad f(x_k + h v) - grad f(x_k - h v)) / (2h)``; it is the
symmetric FO-B estimator with J = 1, derived from the recursion instead of the perturbed
problem (the two differ at J >= 2, in other stencils, and in the forward scheme's reuse of
``grad f(x_k)``).

Costs in gradient calls, K inner steps, J = 1: FO-MAML K+1, forward 2K+1 (the inner loop's
``grad f(x_k)`` are the base points), symmetric 3K+1, order p about (p+1)K+1.

**Batches of tasks** (``batched=True``): x has a leading task axis, one row per task, and
the oracles are vectorised: they take ``(m*B, ...)`` arrays that stack m groups of the B
task rows (row ``i*B + b`` belongs to task b) and return the gradients in the same layout.
Norms, the normalised step, the fixed-point test and the kink guard are then per task, and
the m points of a stencil go to the oracle in one call.

**Anchored oracles** (piecewise-smooth losses such as ReLU networks). An oracle whose
signature has a keyword parameter ``anchor`` is called as ``oracle(points, anchor=x_k)`` at
the points of a stencil around ``x_k`` (and in the perturbed solve); ``anchor`` has the
shape of x (one row per task, even when the points stack m groups). Such an oracle should
return the gradient of the smooth piece that contains the anchor (for a network: the
activation pattern of x_k frozen), so that the difference approximates the one-sided
Hessian that autograd differentiates instead of a jump across a kink. Other calls, and
oracles without the parameter, get the plain point.
"""
from __future__ import annotations

import inspect
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
    inner_hvp_calls: int = 0  # exact Hessian-vector products (maml_hvp)
    fixed_point_iters: list[int] = field(default_factory=list)  # iterations used per perturbed solve
    fixed_point_residual: float = 0.0  # largest final |w_(j+1) - w_j| / |v| over the solves
    kink_retries: int = 0  # (task) steps whose step size the kink guard shrank
    kink_unresolved: int = 0  # (task) steps whose one-sided differences still disagreed
    kink_suspects: int = 0  # (task) steps whose one-sided differences disagreed by > kink_check
    unfrozen_kinks: list[str] = field(default_factory=list)  # networks: kinked functions no frozen module covers

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


def accepts_anchor(oracle: Oracle) -> bool:
    """Whether ``oracle`` takes the keyword ``anchor`` (see "Anchored oracles" above)."""
    try:
        parameters = inspect.signature(oracle).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    p = parameters.get("anchor")
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


class _Oracles:
    """The two gradient oracles with checks, call counts and the task layout.

    Per-task scalars (norms, step sizes, masks) are Python floats and bools for one task,
    and arrays of shape ``(B, 1, ..., 1)`` broadcasting against x for a batch.
    """

    def __init__(self, x, inner_grad: Oracle, outer_grad: Oracle, batched: bool, stack: bool = True,
                 inner_hvp: Callable | None = None):
        self.x, self.batched, self.stack = x, batched, stack
        self.oracles = {"inner_grad": inner_grad, "outer_grad": outer_grad, "inner_hvp": inner_hvp}
        self.anchored = {name: accepts_anchor(fn) for name, fn in self.oracles.items()}
        self.info = EstimateInfo()

    def inner(self, points: list, where: str, anchor=None) -> list:
        return self._call("inner_grad", points, where, anchor)

    def outer(self, points: list, where: str, anchor=None) -> list:
        return self._call("outer_grad", points, where, anchor)

    def hvp(self, point, v, where: str):
        """``hess f(point) v``, checked like a gradient."""
        return self._checked("inner_hvp", point, where, {}, v)

    def stacks(self, n: int) -> bool:
        """Whether ``n`` points go to the oracle in one stacked call."""
        return self.batched and self.stack and n > 1

    def _call(self, name: str, points: list, where: str, anchor=None) -> list:
        """Gradients at ``points``: one oracle call per point, or one stacked call per batch;
        ``anchor`` goes to the oracle when it accepts one."""
        kw = {"anchor": anchor} if anchor is not None and self.anchored[name] else {}
        if self.stacks(len(points)):
            stacked = arrays.namespace(points[0]).concatenate(points)
            return list(self._checked(name, stacked, where, kw).reshape(len(points), *points[0].shape))
        return [self._checked(name, p, where, kw) for p in points]

    def _checked(self, name: str, point, where: str, kw: dict, *args):
        g = self.oracles[name](point, *args, **kw)
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
        if not self.batched and arrays.is_shape_only(a):
            raise ValueError("a shape-only (meta) x needs batched=True: one task's norms are Python floats, "
                             "read from values; give x a leading task axis of length 1")
        return arrays.row_norms(a) if self.batched else arrays.norm(a)

    def where(self, mask, a, b):
        return arrays.namespace(mask).where(mask, a, b) if self.batched else (a if mask else b)

    # Values are read only by the three methods below. On shape-only input (the meta device,
    # arrays.is_shape_only) there are none: every branch takes its costliest side (all tasks
    # counted: no early exit, every kink retry, "solve" to max_fixed_point_iters) and checks
    # that would raise pass, so memory and calls are those of the worst case.
    def count(self, mask) -> int:
        """How many tasks satisfy ``mask`` (shape-only: all of them)."""
        if arrays.is_shape_only(self.x):
            return self.x.shape[0] if self.batched else 1
        return int(mask.sum()) if self.batched else int(bool(mask))

    def fails(self, mask) -> bool:
        """Whether a check's failure ``mask`` holds for any task (shape-only: never)."""
        return not arrays.is_shape_only(self.x) and self.count(mask) > 0

    def largest(self, values) -> float:
        """The largest of per-task values (a plain number when the value is shared; NaN on
        shape-only input)."""
        if arrays.is_shape_only(values):
            return float("nan")
        return float(values.max()) if hasattr(values, "max") else float(values)

    def tasks(self, mask) -> str:
        """`` for task(s) i, j of the batch`` where ``mask`` holds ('' for one task)."""
        if not self.batched:
            return ""
        held = (mask.cpu().numpy() if arrays.is_tensor(mask) else np.asarray(mask)).reshape(len(mask), -1).any(1)
        index = np.flatnonzero(held).tolist()
        shown = ", ".join(map(str, index[:10])) + (f", ... ({len(index)} in all)" if len(index) > 10 else "")
        return f" for task{'s' if len(index) > 1 else ''} {shown} of the batch"


def _inner_loop(x, oracles: _Oracles, alpha, steps: int, every: int | None = None, keep_grads: bool = False,
                first: int = 0):
    """Run ``steps`` inner steps from ``x = x_first``. Returns the last iterate and the
    checkpoints ``{k: (x_k, grad f(x_k) if keep_grads else None)}`` for k a multiple of
    ``every`` (none when ``every`` is None)."""
    kept = {}
    for k in range(first, first + steps):
        (g,) = oracles.inner([x], f"at inner step {k}")
        if every is not None and k % every == 0:
            kept[k] = (x, g if keep_grads else None)
        x = x - alpha * g
    return x, kept


def _storage(store_iterates: bool, checkpoint_every) -> int | None:
    """The checkpoint spacing of the inner loop: c, 1 (``store_iterates``) or None (keep
    nothing: recompute from x_0)."""
    if checkpoint_every is not None:
        checkpoint_every = integer("checkpoint_every", checkpoint_every)
        if not store_iterates:
            raise ValueError("checkpoint_every keeps every c-th iterate and store_iterates=False none: pass one "
                             "of them (checkpoint_every >= inner_steps keeps x_0 only)")
    return checkpoint_every or (1 if store_iterates else None)


def _iterate(x0, kept: dict, k: int, oracles: _Oracles, alpha, with_grad: bool):
    """``x_k`` (and ``grad f(x_k)`` when ``with_grad``) from the nearest checkpoint s <= k in
    ``kept`` (else x_0, without its gradient). Gradient calls: ``k - s``, plus one for a
    wanted ``grad f(x_k)`` when s has no kept gradient. Nothing is stored."""
    s = max((j for j in kept if j <= k), default=0)
    xk, gk = kept.get(s, (x0, None))
    if k > s:
        if gk is not None:  # the checkpoint's gradient gives its step for free
            xk, s = xk - alpha * gk, s + 1
        xk, _ = _inner_loop(xk, oracles, alpha, k - s, first=s)
        gk = None
    if with_grad and gk is None:
        (gk,) = oracles.inner([xk], f"at inner step {k} (recomputed)")
    return xk, gk


# ---------------------------------------------------------------------------------------------
# the perturbed solve


@dataclass(frozen=True)
class _Solve:
    """How the perturbed problem of the last inner step is solved."""

    iters: int | None  # None: to tolerance
    tol: float
    max_iters: int
    delta: float  # the estimate's delta, named in its errors


def _outer_direction(t, xk, v, oracles: _Oracles, alpha, solve: _Solve, k: int, outer_anchor=None):
    """The direction ``w`` with ``u(t) = x_k - t w`` the J-th fixed-point iterate.

    ``w_0 = v = grad F(phi(x_k))``; ``w_{j+1} = grad F(phi(x_k - t w_j))``, so the residual
    ``|u_{j+1} - u_j| = |t| |w_{j+1} - w_j|``. Raises :class:`FixedPointError` when it stops
    shrinking above roundoff, or when ``"solve"`` does not reach its tolerance, naming the
    delta, the backward step ``k`` and the tasks of a batch where it fails. Anchored oracles
    get ``x_k`` (inner) and ``outer_anchor = phi(x_k)`` (outer).
    """
    vnorm = oracles.norm(v)
    floor = 64 * arrays.dtype_eps(oracles.x) * vnorm
    w, previous, residual = v, vnorm, 0 * vnorm
    iters = 1
    while iters < (solve.iters or solve.max_iters):
        where = f"in the perturbed solve (iteration {iters})"
        u = xk - t * w
        (g,) = oracles.inner([u], where, anchor=xk)
        (w_new,) = oracles.outer([u - alpha * g], where, anchor=outer_anchor)
        change = oracles.norm(w_new - w)
        w, iters, residual = w_new, iters + 1, change / vnorm
        growing = (change > floor) & (change >= previous)
        if oracles.fails(growing):
            ratio = oracles.largest(oracles.where(growing, change / previous, 0 * change))
            raise FixedPointError(
                f"the perturbed fixed point u = x - t grad F(phi(u)) at backward step {k}{oracles.tasks(growing)} "
                f"diverges (delta={solve.delta:g}, |t| up to {oracles.largest(abs(t)):.3g}): |w_(j+1) - w_j| grew "
                f"at iteration {iters - 1} (contraction ratio {ratio:.3g} >= 1). It contracts when "
                f"|delta| L_F (1 + alpha L) < 1: reduce delta"
            )
        target = oracles.where(solve.tol * vnorm > floor, solve.tol * vnorm, floor)
        if solve.iters is None and not oracles.count(change > target):
            break
        previous = change
    else:
        if solve.iters is None and oracles.fails(change > target):  # true whenever values exist
            raise FixedPointError(
                f"the perturbed fixed point at backward step {k}{oracles.tasks(change > target)} "
                f"(delta={solve.delta:g}) did not reach fixed_point_tol={solve.tol:g} in "
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
    outer_anchor = None
    if solve is not None and oracles.anchored["outer_grad"]:  # phi(x_k), the outer loss's anchor
        outer_anchor = xk - alpha * (gk if gk is not None else oracles.inner([xk], where)[0])
    direction = lambda s: (v if solve is None else  # noqa: E731
                           _outer_direction(s * h, xk, v, oracles, alpha, solve, k, outer_anchor))
    if oracles.stacks(len(moved)):
        directions = {s: direction(s) for s in moved}
        stacked = dict(zip(moved, oracles.inner([xk - (s * h) * directions[s] for s in moved], where, anchor=xk)))
        at = lambda s: (directions[s], stacked[s])  # noqa: E731
    else:
        at = lambda s: (w := direction(s), oracles.inner([xk - (s * h) * w], where, anchor=xk)[0])  # noqa: E731
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


def _backward_step(xk, gk, v, delta, scheme, normalize, solve, oracles: _Oracles, alpha, k, kink_tol, kink_check):
    """``D(x_k; v)``: the estimate of ``(I - alpha hess f(x_k)) v``."""
    vnorm = oracles.norm(v)
    if not oracles.count(vnorm > 0):
        return v
    h = oracles.where(vnorm > 0, delta / oracles.where(vnorm > 0, vnorm, 1), delta) if normalize else delta
    if scheme == "complex":
        t = 1j * h
        xc, vc = arrays.to_complex(xk), arrays.to_complex(v)
        w = vc if solve is None else _outer_direction(t, xc, vc, oracles, alpha, solve, k)
        (g,) = oracles.inner([xc - t * w], f"at backward step {k}")
        return arrays.real(w) + (alpha / h) * arrays.imag(g)
    stencil = stencil_for(scheme)
    central = solve is None and {-1, 1} <= set(stencil.offsets)
    guard, check = central and kink_tol is not None, central and kink_check is not None
    out, grads = _stencil_step(xk, gk, v, h, stencil, oracles, alpha, solve, k, keep_grads=guard or check)
    if not (guard or check):
        return out
    disagreement = _disagreement(grads, gk, oracles)
    if check:
        oracles.info.kink_suspects += oracles.count(disagreement > kink_check)
    if not guard:
        return out
    # kink guard: shrink the step tenfold while the one-sided differences disagree and the
    # disagreement keeps falling; a rising one means roundoff, so the last step is kept
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
    kink_check: float | None = None,
    store_iterates: bool = True,
    checkpoint_every: int | None = None,
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
        (central stencil for even p, the most centred offsets containing 0 for odd p, e.g.
        -1..2 at p = 3; O(delta^p)), ``"onesided<p>"`` (offsets 0..p), or ``"complex"``
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
    kink_check : if set (same stencils), only count in ``info.kink_suspects`` the (task)
        steps whose one-sided differences disagree by more than ``kink_check`` times their
        mean: a kink that an anchored oracle did not freeze, or roundoff. Nothing changes.
    store_iterates : keep ``x_0..x_{K-1}`` (and ``grad f(x_k)`` where a stencil or the guard
        needs it) from the inner loop: K+1 parameter vectors. ``False`` recomputes ``x_k``
        from x_0 at each backward step instead: memory flat in K for ``K(K-1)/2`` more
        gradient calls (``K(K+1)/2`` where ``grad f(x_k)`` is needed).
    checkpoint_every : c >= 1, between the two (with ``store_iterates=True``, the default;
        ``False`` with c raises): keep ``x_k`` (and ``grad f(x_k)`` where needed) for k = 0,
        c, 2c, ... only, and at backward step k recompute ``x_k`` from the checkpoint
        ``s = c floor(k / c)`` below it; each iterate is recomputed from its checkpoint and
        none is kept, so memory holds ``ceil(K / c)`` iterates (x_0 is the input) for
        ``sum_{k<K} (k mod c) = q c(c-1)/2 + r(r-1)/2`` more gradient calls (K = q c + r).
        (Recomputing a segment once and keeping it would save calls, ``K - ceil(K/c)`` in all,
        but hold c more vectors: memory is what this option buys.) c = 1 is
        ``store_iterates=True``; c >= K keeps x_0 only. The estimate is bit-identical to
        ``store_iterates=True`` for every c.
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
                       integer("max_fixed_point_iters", max_fixed_point_iters, 2), delta)
    else:
        J = integer("fixed_point_iters", fixed_point_iters)
        solve = None if J == 1 else _Solve(J, 0.0, J, delta)
    if kink_tol is not None:
        kink_tol = positive("kink_tol", kink_tol)
    if kink_check is not None:
        kink_check = positive("kink_check", kink_check)
    every = _storage(store_iterates, checkpoint_every)
    oracles = _Oracles(x, inner_grad, outer_grad, batched, stack_stencil)
    # grad f(x_k) is needed by one-sided stencils (offset 0) and by the kink guard
    base = scheme != "complex" and (0 in stencil_for(scheme).offsets or kink_tol is not None or kink_check is not None)
    xK, kept = _inner_loop(x, oracles, alpha, inner_steps, every=every, keep_grads=base)
    (v,) = oracles.outer([xK], f"at x_K (K={inner_steps})")
    del xK  # the backward pass needs x_0..x_{K-1} only
    for k in reversed(range(inner_steps)):
        xk, gk = _iterate(x, kept, k, oracles, alpha, base)
        step_solve = solve if k == inner_steps - 1 else None
        v = _backward_step(xk, gk, v, delta, scheme, normalize, step_solve, oracles, alpha, k, kink_tol, kink_check)
        kept.pop(k, None)  # a checkpoint is not needed below its own step
    return (v, oracles.info) if return_info else v


def fo_maml(x, inner_grad: Oracle, outer_grad: Oracle, *, alpha: float, inner_steps: int = 1,
            batched: bool = False, return_info: bool = False):
    """First-order MAML: ``grad F(phi^K(x))``, the meta-gradient with the Jacobians dropped."""
    x = _check_point(x, batched)
    alpha = positive("alpha", alpha)
    inner_steps = integer("inner_steps", inner_steps)
    oracles = _Oracles(x, inner_grad, outer_grad, batched)
    xK, _ = _inner_loop(x, oracles, alpha, inner_steps)
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


def _recursion(x, oracles: _Oracles, alpha, inner_steps: int, store_iterates: bool, checkpoint_every, jvp):
    """``v_K = grad F(x_K)``, ``v_k = v_{k+1} - alpha jvp(x_k, v_{k+1})`` for k = K-1..0: the
    backward recursion of the meta-gradient with ``jvp(x, v)`` standing for ``hess f(x) v``;
    the iterates stored, checkpointed or recomputed as in :func:`fob_maml`."""
    xK, kept = _inner_loop(x, oracles, alpha, inner_steps, every=_storage(store_iterates, checkpoint_every))
    (v,) = oracles.outer([xK], f"at x_K (K={inner_steps})")
    del xK
    for k in reversed(range(inner_steps)):
        xk, _ = _iterate(x, kept, k, oracles, alpha, with_grad=False)
        v = v - alpha * jvp(xk, v, k)
        kept.pop(k, None)
    return v


def maml_hvp(x, inner_grad: Oracle, outer_grad: Oracle, inner_hvp: Callable, *, alpha: float, inner_steps: int = 1,
             store_iterates: bool = True, checkpoint_every: int | None = None, batched: bool = False,
             return_info: bool = False):
    """Exact MAML meta-gradient by the Hessian-vector recursion (HVP-MAML).

    ``v_K = grad F(x_K)``, ``v_k = v_{k+1} - alpha hess f(x_k) v_{k+1}``, answer ``v_0``:
    ``inner_hvp(x, v)`` returns ``hess f(x) v`` (rows of a batch: one task per row). Each
    product needs the activations of one inner step only, so memory does not grow with K
    beyond the stored iterates; ``store_iterates`` and ``checkpoint_every`` are those of
    :func:`fob_maml` (``False``: memory flat in K, ``K(K-1)/2`` more gradient calls). Costs
    K+1 gradient calls (K inner, one outer) and K products, counted in ``info``.
    """
    x = _check_point(x, batched)
    alpha = positive("alpha", alpha)
    inner_steps = integer("inner_steps", inner_steps)
    oracles = _Oracles(x, inner_grad, outer_grad, batched, inner_hvp=inner_hvp)
    v = _recursion(x, oracles, alpha, inner_steps, store_iterates, checkpoint_every,
                   lambda xk, v, k: oracles.hvp(xk, v, f"at backward step {k}"))
    return (v, oracles.info) if return_info else v


def hf_maml(x, inner_grad: Oracle, outer_grad: Oracle, *, alpha: float, delta: float, inner_steps: int = 1,
            normalize: bool = False, store_iterates: bool = True, checkpoint_every: int | None = None,
            batched: bool = False, return_info: bool = False):
    """HF-MAML (Fallah, Mokhtari and Ozdaglar 2019): the recursion of :func:`maml_hvp` with
    each ``hess f(x_k) v`` replaced by ``(grad f(x_k + h v) - grad f(x_k - h v)) / (2h)``,
    ``h = delta`` (``normalize=True``: ``h = delta / |v|``, the parameters move by delta).
    Bias O(delta^2) per step; 3K+1 gradient calls. Equal to
    ``fob_maml(scheme="symmetric", fixed_point_iters=1)`` up to roundoff, by another route.
    """
    x = _check_point(x, batched)
    alpha = positive("alpha", alpha)
    delta = positive("delta", delta)
    inner_steps = integer("inner_steps", inner_steps)
    oracles = _Oracles(x, inner_grad, outer_grad, batched)

    def difference(xk, v, k):
        vnorm = oracles.norm(v)
        h = oracles.where(vnorm > 0, delta / oracles.where(vnorm > 0, vnorm, 1), delta) if normalize else delta
        plus, minus = oracles.inner([xk + h * v, xk - h * v], f"at backward step {k}")
        return (plus - minus) / (2 * h)

    v = _recursion(x, oracles, alpha, inner_steps, store_iterates, checkpoint_every, difference)
    return (v, oracles.info) if return_info else v
