"""Meta-optimizers against hand-computed steps, and the torch.optim conventions."""
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.optim import SNGDM, ClippedSGD, NormalizedSGD

OPTIMIZERS = [(ClippedSGD, {"clip": 1.0}), (NormalizedSGD, {}), (SNGDM, {"beta": 0.9})]


def _param(values):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else torch.tensor(g, dtype=torch.float64)
    opt.step()


# ---------------------------------------------------------------------------------------------
# hand-computed steps, g = (3, 4), |g| = 5


@pytest.mark.parametrize("clip, expected", [(1.0, [1 - 0.06, 2 - 0.08]),  # clipped: lr * (1/5) * g
                                            (10.0, [1 - 0.3, 2 - 0.4])])  # not clipped: lr * g
def test_clipped_step(clip, expected):
    x = _param([1.0, 2.0])
    _step(ClippedSGD([x], lr=0.1, clip=clip), [x], [[3.0, 4.0]])
    np.testing.assert_allclose(x.detach(), expected, rtol=1e-15)


def test_normalized_step():
    x = _param([1.0, 2.0])
    _step(NormalizedSGD([x], lr=0.1), [x], [[3.0, 4.0]])
    np.testing.assert_allclose(x.detach(), [1 - 0.06, 2 - 0.08], rtol=1e-15)


def test_sngdm_steps():
    """beta = 0.5: m1 = (1.5, 2) -> step -lr (0.6, 0.8); m2 = 0.5 m1 + 0.5 (0, -2) = (0.75, 0),
    |m2| = 0.75 -> step -lr (1, 0)."""
    x = _param([1.0, 2.0])
    opt = SNGDM([x], lr=0.1, beta=0.5)
    _step(opt, [x], [[3.0, 4.0]])
    np.testing.assert_allclose(x.detach(), [0.94, 1.92], rtol=1e-15)
    _step(opt, [x], [[0.0, -2.0]])
    np.testing.assert_allclose(x.detach(), [0.84, 1.92], rtol=1e-15)
    np.testing.assert_allclose(opt.state[x]["momentum_buffer"], [0.75, 0.0], rtol=1e-15)


def test_norm_is_over_the_whole_group_and_groups_are_separate():
    a, b = _param([0.0, 0.0]), _param([0.0])
    _step(NormalizedSGD([a, b], lr=1.0), [a, b], [[3.0, 0.0], [4.0]])  # one group: |g| = 5
    np.testing.assert_allclose(torch.cat([a, b]).detach(), [-0.6, 0.0, -0.8])
    a, b = _param([0.0, 0.0]), _param([0.0])
    _step(NormalizedSGD([{"params": [a]}, {"params": [b], "lr": 2.0}], lr=1.0), [a, b], [[3.0, 0.0], [4.0]])
    np.testing.assert_allclose(torch.cat([a, b]).detach(), [-1.0, 0.0, -2.0])  # each group normalized, own lr


def test_parameters_without_gradient_are_skipped():
    a, b = _param([1.0, 1.0]), _param([5.0])
    _step(SNGDM([a, b], lr=0.5), [a, b], [[0.0, 2.0], None])
    np.testing.assert_allclose(a.detach(), [1.0, 0.5])
    assert b.item() == 5.0 and b not in SNGDM([a, b], lr=0.5).state


@pytest.mark.parametrize("cls, kw", OPTIMIZERS)
def test_zero_gradient_is_a_zero_step(cls, kw):
    x = _param([1.0, -2.0])
    opt = cls([x], lr=0.1, **kw)
    _step(opt, [x], [[0.0, 0.0]])
    assert x.detach().tolist() == [1.0, -2.0]
    _step(opt, [x], [[0.0, 3.0]])  # and a later non-zero gradient still moves x by lr (or less)
    assert torch.isfinite(x).all() and x[1].item() == pytest.approx(-2.1)


# ---------------------------------------------------------------------------------------------
# equivalences (hypothesis)

grads = st.lists(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3), min_size=1, max_size=6)


@given(grads)
def test_sngdm_with_beta_zero_is_normalized_sgd(sequence):
    x, y = _param([0.5, -1.0, 2.0]), _param([0.5, -1.0, 2.0])
    a, b = SNGDM([x], lr=0.3, beta=0.0), NormalizedSGD([y], lr=0.3)
    for g in sequence:
        _step(a, [x], [g])
        _step(b, [y], [g])
    np.testing.assert_allclose(x.detach(), y.detach(), rtol=1e-12, atol=1e-12)


@given(grads)
def test_clipped_sgd_with_a_large_clip_is_sgd(sequence):
    x, y = _param([0.5, -1.0, 2.0]), _param([0.5, -1.0, 2.0])
    a, b = ClippedSGD([x], lr=0.01, clip=1e9), torch.optim.SGD([y], lr=0.01)
    for g in sequence:
        _step(a, [x], [g])
        _step(b, [y], [g])
    np.testing.assert_allclose(x.detach(), y.detach(), rtol=1e-12, atol=1e-12)


any_finite = st.lists(st.floats(-1e300, 1e300), min_size=3, max_size=3)  # subnormal to huge


@given(any_finite, st.floats(1e-3, 1e3))
def test_step_lengths_for_any_finite_gradient(g, clip):
    """Normalized: length lr; clipped: lr min(|g|, clip); the norm neither under- nor overflows."""
    norm = math.hypot(*g)
    for opt_cls, kw, expected in ((NormalizedSGD, {}, 0.7 if norm > 0 else 0.0),
                                  (ClippedSGD, {"clip": clip}, 0.7 * min(norm, clip))):
        x = _param([0.0, 0.0, 0.0])
        _step(opt_cls([x], lr=0.7, **kw), [x], [g])
        assert math.hypot(*x.detach().tolist()) == pytest.approx(expected, rel=1e-12, abs=1e-300)


# ---------------------------------------------------------------------------------------------
# torch conventions


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    clone = torch.nn.Linear(3, 2).double()
    clone.load_state_dict(model.state_dict())
    data = torch.randn(8, 3, dtype=torch.float64)

    def closure_for(m, opt):
        def closure():
            opt.zero_grad()
            loss = (m(data) ** 2).sum()
            loss.backward()
            return loss
        return closure

    opt = SNGDM(model.parameters(), lr=0.1, beta=0.8)
    for _ in range(3):
        opt.step(closure_for(model, opt))
    buffer = io.BytesIO()  # through serialization, as a checkpoint would
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    assert all("momentum_buffer" in s for s in state["state"].values())
    clone.load_state_dict(model.state_dict())
    restored = SNGDM(clone.parameters(), lr=0.5, beta=0.1)  # hyper-parameters come back from the state
    restored.load_state_dict(state)
    assert restored.param_groups[0]["lr"] == 0.1 and restored.param_groups[0]["beta"] == 0.8
    for _ in range(2):
        opt.step(closure_for(model, opt))
        restored.step(closure_for(clone, restored))
    for p, q in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("cls, kw", OPTIMIZERS)
def test_closure_returns_the_loss_and_steps_descend(cls, kw):
    x = _param([3.0, -4.0])
    opt = cls([x], lr=0.1, **kw)

    def closure():
        opt.zero_grad()
        loss = (x ** 2).sum()
        loss.backward()
        return loss

    first = opt.step(closure)
    assert first.item() == 25.0
    assert (x ** 2).sum().item() < 25.0


def test_works_with_lr_schedulers():
    x = _param([1.0])
    opt = NormalizedSGD([x], lr=1.0)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    for expected in (0.0, -0.5, -0.75):
        _step(opt, [x], [[1.0]])
        schedule.step()
        assert x.item() == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# hyper-parameters


@pytest.mark.parametrize("cls, kw, name, interval", [
    (ClippedSGD, {"lr": 0.0}, "lr", "(0, inf)"),
    (ClippedSGD, {"lr": -1.0}, "lr", "(0, inf)"),
    (NormalizedSGD, {"lr": math.nan}, "lr", "(0, inf)"),
    (NormalizedSGD, {"lr": math.inf}, "lr", "(0, inf)"),
    (NormalizedSGD, {"lr": "fast"}, "lr", "(0, inf)"),
    (ClippedSGD, {"lr": 0.1, "clip": 0.0}, "clip", "(0, inf)"),
    (ClippedSGD, {"lr": 0.1, "clip": -2.0}, "clip", "(0, inf)"),
    (SNGDM, {"lr": 0.1, "beta": 1.0}, "beta", "[0, 1)"),
    (SNGDM, {"lr": 0.1, "beta": -0.1}, "beta", "[0, 1)"),
])
def test_bad_hyper_parameters_are_rejected(cls, kw, name, interval):
    with pytest.raises(ValueError, match=rf"^{name} must be in \{interval[0]}0, (inf|1)\{interval[-1]}, got"):
        cls([_param([1.0])], **kw)


def test_bad_group_override_is_rejected_before_the_group_is_added():
    opt = SNGDM([_param([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="beta must be in"):
        opt.add_param_group({"params": [_param([2.0])], "beta": 1.5})
    assert len(opt.param_groups) == 1
