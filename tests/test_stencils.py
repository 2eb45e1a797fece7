from fractions import Fraction as Fr

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from fobtheory import symbolic
from fobtheory.stencils import first_derivative_stencil, fornberg_weights, scheme_order, stencil_for

# F2SA-p's coefficient table (offsets in units of 1/lambda): the odd orders are the most centred
# p + 1 offsets that contain 0
F2SA_P = {
    2: ((-1, 1), (Fr(-1, 2), Fr(1, 2))),
    3: ((-1, 0, 1, 2), (Fr(-1, 3), Fr(-1, 2), Fr(1), Fr(-1, 6))),
    5: ((-2, -1, 0, 1, 2, 3), (Fr(1, 20), Fr(-1, 2), Fr(-1, 3), Fr(1), Fr(-1, 4), Fr(1, 30))),
}


@pytest.mark.parametrize("p", sorted(F2SA_P))
def test_default_stencils_are_f2sa_p_s_exactly(p):
    offsets, weights = F2SA_P[p]
    assert stencil_for(p).offsets == offsets and stencil_for(p).weights == weights


@pytest.mark.parametrize("p", [8, 10])
def test_even_orders_are_the_central_stencils_of_sympy(p):
    """F2SA-p's p = 8 and 10: the central stencils; sympy's own Fornberg implementation,
    on the central offsets with 0, gives weight 0 there and the same weights elsewhere."""
    offsets = list(range(-p // 2, p // 2 + 1))
    ref = sp.finite_diff_weights(1, offsets, 0)[1][-1]
    assert ref[p // 2] == 0
    expected = tuple(Fr(int(w.p), int(w.q)) for i, w in enumerate(ref) if i != p // 2)
    assert stencil_for(p).offsets == tuple(o for o in offsets if o) and stencil_for(p).weights == expected


@pytest.mark.parametrize("p, centred, one_sided", [(3, Fr(1, 12), Fr(1, 4)), (5, Fr(1, 60), Fr(1, 6))])
def test_centred_odd_stencils_cut_the_leading_constant(p, centred, one_sided):
    """``|M_(p+1)| / (p+1)!`` (M_m = sum_j w_j s_j^m): 1/12 against 1/4 at p = 3, 1/60 against
    1/6 at p = 5, with the same count p of perturbed points; the sympy leading constants of
    the cosine task keep that ratio (sign included) since the path derivative cancels."""
    c, o = stencil_for(p), stencil_for(f"onesided{p}")
    assert len(c.perturbed_offsets) == len(o.perturbed_offsets) == p
    for scheme, value in ((p, centred), (f"onesided{p}", one_sided)):
        assert abs(symbolic.moment(scheme, p + 1)) / sp.factorial(p + 1) == value
        assert all(symbolic.moment(scheme, m) == 0 for m in range(2, p + 1))
    ratio = symbolic.moment(p, p + 1) / symbolic.moment(f"onesided{p}", p + 1)
    assert sp.simplify(symbolic.leading_constant(p) / symbolic.leading_constant(f"onesided{p}") - ratio) == 0


def test_published_weights():
    # Fornberg (1988), Table 1: central first-derivative weights of orders 2, 4, 6
    assert first_derivative_stencil(2).weights == (Fr(-1, 2), Fr(1, 2))
    assert first_derivative_stencil(4).weights == (Fr(1, 12), Fr(-2, 3), Fr(2, 3), Fr(-1, 12))
    assert first_derivative_stencil(6).weights == (Fr(-1, 60), Fr(3, 20), Fr(-3, 4), Fr(3, 4), Fr(-3, 20), Fr(1, 60))
    # one-sided: forward difference and the third-order rule
    assert first_derivative_stencil(1).offsets == (0, 1) and first_derivative_stencil(1).weights == (-1, 1)
    assert stencil_for("onesided3").offsets == (0, 1, 2, 3)
    assert stencil_for("onesided3").weights == (Fr(-11, 6), 3, Fr(-3, 2), Fr(1, 3))
    # second derivative on three points
    assert fornberg_weights([-1, 0, 1], 2) == [1, -2, 1]


@given(st.integers(1, 8), st.booleans(), st.lists(st.integers(-50, 50), min_size=9, max_size=9),
       st.integers(-5, 5))
def test_a_stencil_of_order_p_differentiates_polynomials_of_degree_p_exactly(p, one_sided, coeffs, x0):
    s = first_derivative_stencil(p, one_sided)
    poly = coeffs[: p + 1]  # degree p; exact rational evaluation

    def f(x):
        return sum(c * Fr(x) ** k for k, c in enumerate(poly))

    exact = sum(k * c * Fr(x0) ** (k - 1) for k, c in enumerate(poly) if k)
    assert sum(w * f(x0 + o) for o, w in zip(s.offsets, s.weights)) == exact


@given(st.lists(st.integers(-6, 6), min_size=2, max_size=7, unique=True), st.integers(0, 3))
def test_fornberg_weights_are_exact_for_monomials(offsets, m):
    if m >= len(offsets):
        return
    w = fornberg_weights(offsets, m)
    for k in range(len(offsets)):
        exact = Fr(1) if k == m else Fr(0)
        exact *= 1 if k != m else __import__("math").factorial(m)
        assert sum(wj * Fr(o) ** k for wj, o in zip(w, offsets)) == exact


def test_scheme_names_and_errors():
    assert scheme_order("forward") == 1 and scheme_order("symmetric") == 2 and scheme_order(4) == 4
    assert scheme_order("complex") == 2 and stencil_for("symmetric").perturbed_offsets == (-1, 1)
    assert stencil_for("forward").perturbed_offsets == (1,) and scheme_order("onesided5") == 5
    assert stencil_for("onesided1") == stencil_for("forward") == stencil_for(1)
    for bad in ("backward", "onesided", "onesided0", "onesided-3", "onesidedx"):
        with pytest.raises(ValueError, match="scheme must be"):
            scheme_order(bad)
    with pytest.raises(ValueError, match="scheme order must be an integer >= 1"):
        first_derivative_stencil(0)
    with pytest.raises(ValueError, match="no real stencil"):
        stencil_for("complex")
    with pytest.raises(ValueError, match="offsets must be distinct"):
        fornberg_weights([0, 0, 1])
    with pytest.raises(ValueError, match=r"order must be in \[0, 1\]"):
        fornberg_weights([0, 1], 2)
