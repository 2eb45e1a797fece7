"""Finite-difference stencils for a first derivative, with exact rational weights.

A stencil is a set of integer offsets ``s_j`` and weights ``w_j`` with

    y'(0) = (1/h) * sum_j w_j y(s_j h) + O(h^p).

Weights come from Fornberg's recursion (Math. Comp. 51, 1988) in exact rational
arithmetic, so they are correct to the last bit when rounded to float.

Named schemes:

- ``"forward"`` = order 1, offsets (0, 1); the offset 0 is free (the unperturbed point).
- ``"symmetric"`` = order 2, offsets (-1, 1).
- integer ``p``: even ``p`` gives the central stencil on offsets +-1..+-p/2 (p points, the
  zero weight dropped); odd ``p`` the most centred p + 1 offsets that contain 0,
  ``-(p-1)/2 .. (p+1)/2`` (p = 3: -1..2, p = 5: -2..3), as F2SA-p uses them. Either way
  p points cost a perturbed solve.
- ``"onesided<p>"`` (e.g. ``"onesided3"``): offsets 0..p, the same p perturbed solves with a
  larger leading constant: ``|M_(p+1)| / (p+1)!`` with ``M_m = sum_j w_j s_j^m`` is 1/12
  centred against 1/4 one-sided at p = 3, 1/60 against 1/6 at p = 5.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache


def fornberg_weights(offsets, order: int = 1, at=0) -> list[Fraction]:
    """Exact weights ``w`` with ``f^(order)(at) ~= sum_j w_j f(offsets_j)`` (unit spacing).

    The rule is exact for polynomials of degree below ``len(offsets)``.
    """
    xs = [Fraction(o) for o in offsets]
    if len(set(xs)) != len(xs):
        raise ValueError(f"offsets must be distinct, got {list(offsets)}")
    if not 0 <= order < len(xs):
        raise ValueError(f"order must be in [0, {len(xs) - 1}] for {len(xs)} offsets, got {order}")
    x0 = Fraction(at)
    n = len(xs)
    c = [[Fraction(0)] * (order + 1) for _ in range(n)]
    c[0][0] = Fraction(1)
    c1 = Fraction(1)
    c4 = xs[0] - x0
    for i in range(1, n):
        mn = min(i, order)
        c2 = Fraction(1)
        c5, c4 = c4, xs[i] - x0
        for j in range(i):
            c3 = xs[i] - xs[j]
            c2 *= c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[i][k] = c1 * (k * c[i - 1][k - 1] - c5 * c[i - 1][k]) / c2
                c[i][0] = -c1 * c5 * c[i - 1][0] / c2
            for k in range(mn, 0, -1):
                c[j][k] = (c4 * c[j][k] - k * c[j][k - 1]) / c3
            c[j][0] = c4 * c[j][0] / c3
        c1 = c2
    return [c[j][order] for j in range(n)]


@dataclass(frozen=True)
class Stencil:
    """Offsets and exact weights of a first-derivative rule of truncation order ``order``."""

    offsets: tuple[int, ...]
    weights: tuple[Fraction, ...]
    order: int

    @property
    def float_weights(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.weights)

    @property
    def perturbed_offsets(self) -> tuple[int, ...]:
        """Offsets other than 0: the points that cost a perturbed solve."""
        return tuple(o for o in self.offsets if o != 0)


def _order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"scheme order must be an integer >= 1, got {order!r}")
    return order


@lru_cache(maxsize=None)
def first_derivative_stencil(order: int, one_sided: bool = False) -> Stencil:
    """The stencil of truncation order ``order`` with p perturbed points (see the module
    docstring): central for even p, the most centred set containing 0 for odd p, or with
    ``one_sided`` the offsets 0..p."""
    order = _order(order)
    if one_sided:
        offsets = tuple(range(0, order + 1))
    elif order % 2 == 0:
        half = order // 2
        offsets = tuple(range(-half, 0)) + tuple(range(1, half + 1))
    else:
        offsets = tuple(range(-(order - 1) // 2, (order + 1) // 2 + 1))
    weights = tuple(fornberg_weights(offsets, 1))
    return Stencil(offsets, weights, order)


SCHEME_ORDERS = {"forward": 1, "symmetric": 2, "complex": 2}
ONE_SIDED = "onesided"


def _parse(scheme) -> tuple[int, bool]:
    """``(order, one_sided)`` of a scheme name or integer order."""
    if isinstance(scheme, str):
        if scheme in SCHEME_ORDERS:
            return SCHEME_ORDERS[scheme], scheme == "forward"
        digits = scheme[len(ONE_SIDED):]
        if scheme.startswith(ONE_SIDED) and digits.isdigit() and int(digits) >= 1:
            return int(digits), True
        raise ValueError(f"scheme must be 'forward', 'symmetric', 'complex', 'onesided<p>' (p >= 1) or an "
                         f"integer order >= 1, got {scheme!r}")
    return _order(scheme), False


def scheme_order(scheme) -> int:
    """Truncation order of a scheme: a name (``forward``, ``symmetric``, ``complex``,
    ``onesided<p>``) or an integer."""
    return _parse(scheme)[0]


def stencil_for(scheme) -> Stencil:
    """Real stencil of a scheme name (``forward``, ``symmetric``, ``onesided<p>``) or integer order."""
    if scheme == "complex":
        raise ValueError("the complex step has no real stencil: it evaluates one point at i*delta")
    return first_derivative_stencil(*_parse(scheme))
