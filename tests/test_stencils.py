from fractions import Fraction as Fr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.stencils import first_derivative_stencil, fornberg_weights, scheme_order, stencil_for


def test_published_weights():
    # Fornberg (1988), Table 1: central first-derivative weights of orders 2, 4, 6
    assert first_derivative_stencil(2).weights == (Fr(-1, 2), Fr(1, 2))
    assert first_derivative_stencil(4).weights == (Fr(1, 12), Fr(-2, 3), Fr(2, 3), Fr(-1, 12))
    assert first_derivative_stencil(6).weights == (Fr(-1, 60), Fr(3, 20), Fr(-3, 4), Fr(3, 4), Fr(-3, 20), Fr(1, 60))
    # one-sided: forward difference and the third-order rule
    assert first_derivative_stencil(1).offsets == (0, 1) and first_derivative_stencil(1).weights == (-1, 1)
    assert first_derivative_stencil(3).weights == (Fr(-11, 6), 3, Fr(-3, 2), Fr(1, 3))
    # second derivative on three points
    assert fornberg_weights([-1, 0, 1], 2) == [1, -2, 1]


@given(st.integers(1, 8), st.lists(st.integers(-50, 50), min_size=9, max_size=9), st.integers(-5, 5))
def test_a_stencil_of_order_p_differentiates_polynomials_of_degree_p_exactly(p, coeffs, x0):
    s = first_derivative_stencil(p)
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
    assert stencil_for("forward").perturbed_offsets == (1,)
    with pytest.raises(ValueError, match="scheme must be"):
        scheme_order("backward")
    with pytest.raises(ValueError, match="scheme order must be an integer >= 1"):
        first_derivative_stencil(0)
    with pytest.raises(ValueError, match="no real stencil"):
        stencil_for("complex")
    with pytest.raises(ValueError, match="offsets must be distinct"):
        fornberg_weights([0, 0, 1])
    with pytest.raises(ValueError, match=r"order must be in \[0, 1\]"):
        fornberg_weights([0, 1], 2)
