"""Exact meta-gradient and leading bias constants of FO-B-MAML on the 1-D cosine task (sympy).

Task (:class:`fobtheory.problems.CosineTask`): ``f(x) = -cos x``, ``F(y) = (y - target)^2 / 2``,
``phi(x) = x - alpha sin x``, ``Phi(x) = F(phi^K(x))``.

**Perturbed path.** The estimators difference ``y(t) = phi(u(t))`` where (``normalize=False``,
so the stencil step is ``t = s_j delta``) ``u_0 = x`` and ``u_{j+1} = x - t F'(phi(u_j))``;
``fixed_point_iters = J`` uses ``u_J``, the solved problem the fixed point ``u*``. Since
``u_J - u* = O(t^(J+1))``, the solved path's Taylor coefficients up to order n are those of
``u_n``: the series is obtained order by order by iterating. ``-y'(0) = grad Phi(x)`` for every J.

**Bias.** A stencil (offsets ``s_j``, weights ``c_j``) estimates ``-(1/delta) sum_j c_j y(s_j delta)``,
the complex step ``-Im y(i delta) / delta``. Expanding y in Taylor series,

    estimate - grad Phi = -sum_{m >= 2} M_m y^(m)(0) delta^(m-1) / m!,
    M_m = sum_j c_j s_j^m   (complex step: M_m = Im i^m),

so a scheme of order p has ``error = c_p delta^p + O(delta^(p+1))`` with
``c_p = -M_(p+1) y^(p+1)(0) / (p+1)!``.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

from .checks import integer
from .stencils import scheme_order, stencil_for

x, alpha, target, t = sp.symbols("x alpha target t", real=True)
_z = sp.Symbol("z", real=True)


def inner_grad(z):
    """``f'(z) = sin z``."""
    return sp.sin(z)


def outer_grad(y):
    """``F'(y) = y - target``."""
    return y - target


def adapt(z, inner_steps: int = 1):
    """``phi^K(z)``: K inner steps ``z <- z - alpha sin z``."""
    for _ in range(integer("inner_steps", inner_steps)):
        z = z - alpha * inner_grad(z)
    return z


@lru_cache(maxsize=None)
def meta_grad(inner_steps: int = 1) -> sp.Expr:
    """Exact ``grad Phi(x) = d/dx F(phi^K(x))``; for K = 1, ``(1 - alpha cos x)(x - alpha sin x - target)``."""
    return sp.diff((adapt(x, inner_steps) - target) ** 2 / 2, x)


def _iterations(fixed_point_iters, order: int) -> int:
    """Iterations J whose path agrees with the requested one up to ``t^order``."""
    if fixed_point_iters == "solve":
        return order
    if isinstance(fixed_point_iters, bool) or not isinstance(fixed_point_iters, int) or fixed_point_iters < 1:
        raise ValueError(f"fixed_point_iters must be an integer >= 1 or 'solve', got {fixed_point_iters!r}")
    return fixed_point_iters


# Series coefficients are polynomials over QQ in x, alpha, target, sin x, cos x: a sparse
# polynomial ring keeps the order-by-order arithmetic exact and fast.
_S, _C = sp.symbols("S C", real=True)
_RING = sp.polys.rings.ring((x, alpha, target, _S, _C), sp.QQ)[0]
_TRIG = {sp.sin(x): _S, sp.cos(x): _C}


def _poly(expr):
    """``expr`` (polynomial in x, alpha, target, sin x, cos x) as a ring element."""
    return _RING.from_expr(sp.sympify(expr).subs(_TRIG))


def _product(a: list, b: list) -> list:
    """Product of two series truncated to their common length (lists of ring coefficients)."""
    return [sum((a[i] * b[k - i] for i in range(k + 1)), _RING.zero) for k in range(len(a))]


def _shifted(g, at, shift: list) -> list:
    """Series of ``g(at + shift(t))`` for ``shift(0) = 0``: ``sum_k g^(k)(at) shift^k / k!``."""
    out, power = [_poly(0)] * len(shift), [_poly(1)] + [_poly(0)] * (len(shift) - 1)
    for k in range(len(shift)):
        dk = _poly(sp.diff(g(_z), _z, k).subs(_z, at) / sp.factorial(k))
        out = [o + dk * q for o, q in zip(out, power)]
        power = _product(power, shift)
    return out


def _phi(u: list) -> list:
    """Series of ``phi(u(t)) = u - alpha sin u`` around ``u(0) = x``."""
    g = _shifted(inner_grad, x, [_poly(0)] + u[1:])
    return [uk - _poly(alpha) * gk for uk, gk in zip(u, g)]


def path_derivatives(fixed_point_iters=1, order: int = 3) -> list[sp.Expr]:
    """``[y(0), y'(0), ..., y^(order)(0)]`` of the perturbed path ``y(t) = phi(u_J(t))``
    (K = 1; ``fixed_point_iters`` J >= 1 or ``"solve"``), by series arithmetic mod ``t^(order+1)``."""
    phi_x = adapt(x)
    u = [_poly(x)] + [_poly(0)] * order
    for _ in range(_iterations(fixed_point_iters, order)):
        w = _shifted(outer_grad, phi_x, [_poly(0)] + _phi(u)[1:])
        u = [_poly(x)] + [-wk for wk in w[:-1]]  # u = x - t w
    back = {_S: sp.sin(x), _C: sp.cos(x)}
    return [sp.factorial(m) * ym.as_expr().subs(back) for m, ym in enumerate(_phi(u))]


def moment(scheme, m: int) -> sp.Rational:
    """``M_m = sum_j c_j s_j^m`` of the scheme's stencil (``Im i^m`` for the complex step)."""
    if scheme == "complex":
        return sp.im(sp.I**m)
    stencil = stencil_for(scheme)
    return sum(sp.Rational(c.numerator, c.denominator) * s**m for s, c in zip(stencil.offsets, stencil.weights))


def exact_degree(scheme) -> int:
    """Largest degree d such that the scheme is exact on every path polynomial of degree d
    (``M_m = 0`` for ``2 <= m <= d``): 1 forward, 2 symmetric and complex, 4 for order 4."""
    d = 1
    while moment(scheme, d + 1) == 0:
        d += 1
    return d


@lru_cache(maxsize=None)
def error_coefficients(scheme, fixed_point_iters=1, order: int | None = None) -> tuple[sp.Expr, ...]:
    """``(e_0, ..., e_order)`` with ``estimate - grad Phi = sum_k e_k delta^k + O(delta^(order+1))``
    (K = 1, ``normalize=False``): ``e_0 = 0`` and ``e_k = -M_(k+1) y^(k+1)(0) / (k+1)!``.
    ``order`` defaults to the scheme's order p."""
    order = scheme_order(scheme) if order is None else order
    ys = path_derivatives(fixed_point_iters, order + 1)
    return (sp.Integer(0),) + tuple(-moment(scheme, k + 1) * ys[k + 1] / sp.factorial(k + 1)
                                    for k in range(1, order + 1))


def leading_constant(scheme, fixed_point_iters=1) -> sp.Expr:
    """``c_p`` in ``estimate - grad Phi = c_p delta^p + O(delta^(p+1))`` (K = 1, ``normalize=False``)."""
    return error_coefficients(scheme, fixed_point_iters)[scheme_order(scheme)]


@lru_cache(maxsize=None)
def constant_evaluator(scheme, fixed_point_iters=1):
    """``c_p`` as a float function ``(x, alpha, target) -> float`` (numpy, vectorised)."""
    return sp.lambdify((x, alpha, target), leading_constant(scheme, fixed_point_iters), "numpy")


@lru_cache(maxsize=None)
def meta_grad_evaluator(inner_steps: int = 1):
    """``grad Phi`` as a float function ``(x, alpha, target) -> float``."""
    return sp.lambdify((x, alpha, target), meta_grad(inner_steps), "numpy")
