"""Frozen activation patterns: FO-B-MAML on ReLU-like networks against autograd's MAML."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fobtheory.nn import CNN1D, PLAIN_DIFFERENCES, meta_gradient, meta_gradient_batch
from fobtheory.patterns import PatternHooks, kinked_modules
from fobtheory.rates import fit_rate

ALPHA = 0.3


def batch_of_episodes(n_tasks=4, n_support=10, n_query=15, length=40, seed=0, dtype=torch.float64, channels=1,
                      height=None):
    g = torch.Generator().manual_seed(seed)
    shape = (channels, height, length) if height else (channels, length)
    xs = torch.randn(n_tasks, n_support, *shape, generator=g, dtype=torch.float64).to(dtype)
    xq = torch.randn(n_tasks, n_query, *shape, generator=g, dtype=torch.float64).to(dtype)
    labels = lambda n: (torch.arange(n) % 5).repeat(n_tasks, 1)  # noqa: E731
    return (xs, labels(n_support)), (xq, labels(n_query))


class KinkZoo(nn.Module):
    """Every frozen module kind in one small 1-D net: LeakyReLU, ReLU6, MaxPool1d, PReLU, Hardtanh."""

    def __init__(self, width=6):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, width, 5, padding=1), nn.LeakyReLU(0.1), nn.MaxPool1d(2),
            nn.Conv1d(width, width, 3, padding=1), nn.ReLU6(), nn.MaxPool1d(3, stride=2, padding=1),
            nn.Conv1d(width, width, 3), nn.PReLU(width), nn.Conv1d(width, width, 3), nn.Hardtanh(-0.5, 0.5))
        self.head = nn.Linear(width * 6, 5)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


class Conv2dPool(nn.Module):
    """MaxPool2d and ReLU on 2-D inputs."""

    def __init__(self, width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(width * 4, 5)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


class FunctionalReLU(nn.Module):
    """A kink no hook can see: ``F.relu`` called in the forward."""

    def __init__(self, width=8):
        super().__init__()
        self.conv, self.head = nn.Conv1d(1, width, 5, stride=2), nn.Linear(width * 18, 5)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).flatten(1))


def flat(grads):
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1).to(torch.float64)


def errors(model, supports, queries, reference, **kw):
    """Per-task relative errors of a batch of meta-gradients against ``reference``."""
    g = flat(meta_gradient_batch(model, supports, queries, alpha=ALPHA, **kw))
    return ((g - reference).norm(dim=1) / reference.norm(dim=1)).numpy()


def kinky(model, steps=40, seed=1, **data):
    """``model`` after a few MAML steps (float64), so that pre-activations crowd the kinks."""
    supports, queries = batch_of_episodes(seed=seed, **data)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        grads = meta_gradient_batch(model, supports, queries, method="maml", alpha=ALPHA)
        for n, p in model.named_parameters():
            p.grad = grads[n].mean(0)
        opt.step()
    return model


MODELS = {
    "cnn_relu": (lambda: CNN1D(width=8, activation="relu").double(), {}),
    "kink_zoo": (lambda: KinkZoo().double(), {}),
    "conv2d_pool": (lambda: Conv2dPool().double(), dict(length=8, height=8)),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request):
    make, data = MODELS[request.param]
    torch.manual_seed(0)
    model = kinky(make(), **data)
    supports, queries = batch_of_episodes(n_tasks=6, seed=7, **data)
    reference = flat(meta_gradient_batch(model, supports, queries, method="maml", alpha=ALPHA))
    return request.param, model, supports, queries, reference


def test_frozen_patterns_match_autograd_maml_at_rate_two_where_plain_differences_fail(trained):
    name, model, supports, queries, reference = trained
    deltas = np.geomspace(1e-4, 1e-1, 7)
    frozen = np.array([errors(model, supports, queries, reference, method="fob_symmetric", delta=d,
                              freeze_pattern=True).max() for d in deltas])
    assert fit_rate(deltas, frozen).covers(2, 0.2), (name, frozen)
    assert errors(model, supports, queries, reference, method="fob_symmetric", delta=1e-5,
                  freeze_pattern=True).max() < 1e-8
    forward = [errors(model, supports, queries, reference, method="fob_forward", delta=d, freeze_pattern=True).max()
               for d in deltas]
    assert fit_rate(deltas, forward).covers(1, 0.15), (name, forward)
    # the plain difference crosses kinks on some task: its worst error is far above the frozen one, and it says so
    with pytest.warns(UserWarning, match=r"of 6 task-steps disagree by more than kink_check=0.1"):
        plain = errors(model, supports, queries, reference, method="fob_symmetric", delta=1e-2, freeze_pattern=False)
    assert plain.max() > 100 * frozen[np.argmin(abs(deltas - 1e-2))]
    # the default freezes the patterns: the same numbers as the explicit call
    kw = dict(method="fob_symmetric", alpha=ALPHA, delta=1e-2)
    assert torch.equal(flat(meta_gradient_batch(model, supports, queries, **kw)),
                       flat(meta_gradient_batch(model, supports, queries, freeze_pattern=True, **kw)))


@pytest.mark.parametrize("K,store", [(3, True), (3, False)])
def test_frozen_patterns_with_several_inner_steps(K, store):
    torch.manual_seed(2)
    model = kinky(CNN1D(width=8, activation="relu").double(), steps=20)
    supports, queries = batch_of_episodes(n_tasks=3, seed=9)
    reference = flat(meta_gradient_batch(model, supports, queries, method="maml", alpha=0.1, inner_steps=K))
    g = flat(meta_gradient_batch(model, supports, queries, method="fob_symmetric", alpha=0.1, inner_steps=K,
                                 delta=1e-5, freeze_pattern=True, store_iterates=store))
    assert ((g - reference).norm(dim=1) / reference.norm(dim=1)).max() < 1e-8


def test_frozen_equals_plain_on_smooth_activations_and_away_from_kinks():
    torch.manual_seed(3)
    supports, queries = batch_of_episodes(n_tasks=3, seed=4)
    gelu = CNN1D(width=6, activation="gelu").double()
    kw = dict(method="fob_symmetric", alpha=ALPHA, delta=1e-3)
    plain = flat(meta_gradient_batch(gelu, supports, queries, freeze_pattern=False, **kw))
    assert torch.equal(flat(meta_gradient_batch(gelu, supports, queries, freeze_pattern=True, **kw)), plain)
    assert torch.equal(flat(meta_gradient_batch(gelu, supports, queries, **kw)), plain)  # the default: plain here
    # ReLU at a step far too small to cross a kink: both evaluate the same piece
    relu = CNN1D(width=6, activation="relu").double()
    kw.update(delta=1e-9)
    a = flat(meta_gradient_batch(relu, supports, queries, freeze_pattern=True, **kw))
    b = flat(meta_gradient_batch(relu, supports, queries, **PLAIN_DIFFERENCES, **kw))
    assert ((a - b).norm(dim=1) / b.norm(dim=1)).max() < 1e-6  # roundoff at delta 1e-9: eps/delta


@settings(max_examples=15)
@given(seed=st.integers(0, 2**16), activation=st.sampled_from(["relu", "gelu", "tanh"]),
       method=st.sampled_from(["fob_forward", "fob_symmetric"]), delta=st.sampled_from([1e-5, 1e-3, 1e-1]))
def test_the_default_is_the_frozen_call_on_kinked_networks_and_the_plain_one_on_smooth_ones(seed, activation, method,
                                                                                           delta):
    torch.manual_seed(seed)
    model = CNN1D(width=4, depth=2, activation=activation).double()
    supports, queries = batch_of_episodes(n_tasks=2, n_support=5, n_query=5, seed=seed)
    kw = dict(method=method, alpha=ALPHA, delta=delta)
    same = dict(freeze_pattern=True) if activation == "relu" else PLAIN_DIFFERENCES
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every kink in a module, or none: nothing to warn about
        assert torch.equal(flat(meta_gradient_batch(model, supports, queries, **kw)),
                           flat(meta_gradient_batch(model, supports, queries, **same, **kw)))


def test_hooks_are_removed_and_the_model_is_untouched():
    model = KinkZoo().double()
    supports, queries = batch_of_episodes(n_tasks=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    meta_gradient_batch(model, supports, queries, method="fob_symmetric", alpha=ALPHA, freeze_pattern=True)
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert len(kinked_modules(model)) == 6


@pytest.mark.parametrize("method", ["maml", "fo_maml", "reptile"])
def test_freeze_pattern_is_refused_by_methods_without_a_stencil(method):
    model = CNN1D(width=4, activation="relu")
    supports, queries = batch_of_episodes(n_tasks=2, dtype=torch.float32)
    with pytest.raises(ValueError, match="freeze_pattern=True applies to fob_forward and fob_symmetric only"):
        meta_gradient_batch(model, supports, queries, method=method, alpha=ALPHA, freeze_pattern=True)


@pytest.mark.parametrize("method", ["maml", "maml_hvp", "fo_maml", "reptile"])
def test_the_default_and_plain_differences_are_accepted_by_every_method(method):
    model = CNN1D(width=4, activation="relu").double()
    supports, queries = batch_of_episodes(n_tasks=2)
    kw = dict(method=method, alpha=ALPHA)
    default = flat(meta_gradient_batch(model, supports, queries, **kw))
    assert torch.equal(flat(meta_gradient_batch(model, supports, queries, freeze_pattern="auto", **kw)), default)
    assert torch.equal(flat(meta_gradient_batch(model, supports, queries, **PLAIN_DIFFERENCES, **kw)), default)


@pytest.mark.parametrize("option,value", [("freeze_pattern", "yes"), ("freeze_pattern", 1), ("kink_check", 0),
                                          ("kink_check", "on")])
def test_bad_kink_options_are_refused(option, value):
    model = CNN1D(width=4, activation="relu").double()
    supports, queries = batch_of_episodes(n_tasks=2)
    with pytest.raises(ValueError, match=option):
        meta_gradient_batch(model, supports, queries, method="fob_symmetric", alpha=ALPHA, **{option: value})


@pytest.mark.parametrize("method, options, why", [
    ("fob_forward", {}, "its one-sided difference cannot tell"),
    ("fob_symmetric", dict(store_iterates=False), "with store_iterates=False the check is not free")])
def test_plain_differences_that_no_free_check_covers_warn_that_they_are_unchecked(trained, method, options, why):
    name, model, supports, queries, _ = trained
    kw = dict(method=method, alpha=ALPHA, delta=1e-2, inner_steps=2, return_info=True, **options)
    with pytest.warns(UserWarning, match=f"{method} runs plain finite differences on a network with kinks .*{why}"):
        _, info = meta_gradient_batch(model, supports, queries, freeze_pattern=False, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, paper = meta_gradient_batch(model, supports, queries, **PLAIN_DIFFERENCES, **kw)  # asked for: silent
        meta_gradient_batch(model, supports, queries, **kw)  # the default freezes every kink of these modules
    assert info.grad_calls == paper.grad_calls  # nothing was spent on a check


def test_a_network_whose_kinks_no_module_holds_runs_plain_and_checked_by_default():
    torch.manual_seed(5)
    model = kinky(FunctionalReLU().double(), steps=30)
    supports, queries = batch_of_episodes(n_tasks=8, seed=6)
    kw = dict(method="fob_symmetric", alpha=ALPHA, delta=3e-2)
    with pytest.warns(UserWarning, match=r"task-steps disagree by more than kink_check=0.1 .* cross kinks \(relu\)"):
        g, info = meta_gradient_batch(model, supports, queries, return_info=True, **kw)
    assert info.unfrozen_kinks == ["relu"] and info.kink_suspects >= 1
    # the check only counts: the estimate is the unchecked one
    assert torch.equal(flat(g), flat(meta_gradient_batch(model, supports, queries, **PLAIN_DIFFERENCES, **kw)))


def test_a_kink_that_cannot_be_frozen_is_reported():
    torch.manual_seed(5)
    hidden = kinky(FunctionalReLU().double(), steps=30)
    visible = nn.Sequential(hidden.conv, nn.ReLU(inplace=True), nn.Flatten(), hidden.head)  # same function, a module
    supports, queries = batch_of_episodes(n_tasks=8, seed=6)
    kw = dict(method="fob_symmetric", alpha=ALPHA, delta=3e-2, freeze_pattern=True, kink_check=0.5, return_info=True)
    with pytest.warns(UserWarning, match="calls relu outside them"):
        g_hidden, info_hidden = meta_gradient_batch(hidden, supports, queries, **kw)
    g_visible, info_visible = meta_gradient_batch(visible, supports, queries, **kw)
    assert info_hidden.unfrozen_kinks == ["relu"] and info_visible.unfrozen_kinks == []
    assert info_hidden.kink_suspects >= 1 and info_visible.kink_suspects == 0
    # the in-place ReLU module is frozen correctly: its estimate is the one of autograd's piece
    reference = flat(meta_gradient_batch(visible, supports, queries, method="maml", alpha=ALPHA))
    frozen = flat(meta_gradient_batch(visible, supports, queries, method="fob_symmetric", alpha=ALPHA, delta=1e-5,
                                      freeze_pattern=True))
    assert ((frozen - reference).norm(dim=1) / reference.norm(dim=1)).max() < 1e-8


@pytest.mark.parametrize("make", [lambda: CNN1D(width=4, activation="relu"), KinkZoo, Conv2dPool])
def test_replaying_at_the_anchor_reproduces_the_network_to_the_last_bit(make):
    torch.manual_seed(8)
    model = make().double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64) if isinstance(model, Conv2dPool) else torch.randn(
        3, 1, 40, dtype=torch.float64)
    with PatternHooks(model) as hooks:
        with hooks.recording() as patterns:
            plain = model(x)
        with hooks.replaying(patterns):
            assert torch.equal(model(x), plain)  # every frozen piece, in float64, at the anchor itself


def test_replaying_checks_that_the_forward_matches_the_recording():
    model = CNN1D(width=4, activation="relu").double()
    x = torch.randn(3, 1, 40, dtype=torch.float64)
    with PatternHooks(model) as hooks:
        with hooks.recording() as patterns:
            model(x)
        with pytest.raises(ValueError, match="were not used"):
            with hooks.replaying(patterns + patterns[:1]):
                model(x)


def test_single_task_meta_gradient_accepts_freeze_pattern():
    torch.manual_seed(6)
    model = kinky(CNN1D(width=6, activation="relu").double(), steps=20)
    (xs, ys), (xq, yq) = batch_of_episodes(n_tasks=1, seed=8)
    support, query = (xs[0], ys[0]), (xq[0], yq[0])
    ref = meta_gradient(model, support, query, method="maml", alpha=ALPHA)
    est = meta_gradient(model, support, query, method="fob_symmetric", alpha=ALPHA, delta=1e-5, freeze_pattern=True)
    num = torch.cat([(est[n] - ref[n]).reshape(-1) for n in ref]).norm()
    assert num / torch.cat([r.reshape(-1) for r in ref.values()]).norm() < 1e-8
