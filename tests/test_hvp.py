"""HVP-MAML and HF-MAML: the exact recursion against closed forms and double backward, the
prior-art identity with FO-B, and the networks where only first order is right."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fobtheory import estimators, problems
from fobtheory.experiments.second_order import KernelSiLU
from fobtheory.memory import measure, peak_bytes
from fobtheory.nn import CNN1D, adapted_accuracy, meta_gradient, meta_gradient_batch

from test_patterns import KinkZoo, batch_of_episodes


def rel(a, b):
    return float(np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b)))


def flat(grads, row=None):
    return torch.cat([(g if row is None else g[row]).reshape(-1) for g in grads.values()])


# ---------------------------------------------------------------------------------------------
# oracles: closed forms


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 4), family=st.sampled_from(["quadratic", "logistic"]),
       storage=st.sampled_from([(True, None), (False, None), (True, 2)]))
def test_maml_hvp_is_the_closed_form_meta_gradient(seed, K, family, storage):
    task = (problems.quadratic_tasks if family == "quadratic" else problems.logistic_tasks)(1, 6, seed=seed)[0]
    x = np.random.default_rng(seed).normal(size=6)
    g, info = estimators.maml_hvp(x, task.inner_grad, task.outer_grad, task.inner_hvp, alpha=task.alpha,
                                  inner_steps=K, store_iterates=storage[0], checkpoint_every=storage[1],
                                  return_info=True)
    assert rel(g, task.meta_grad(x, K)) < 1e-12
    assert info.inner_hvp_calls == K and info.outer_grad_calls == 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 3), delta=st.sampled_from([1e-2, 1e-4]),
       normalize=st.booleans())
def test_hf_maml_equals_symmetric_fob_with_one_fixed_point_iteration(seed, K, delta, normalize):
    """Two derivations, one estimator: HF-MAML's difference HVPs in MAML's recursion and the
    perturbed problem's symmetric difference at J = 1 agree to roundoff."""
    task = problems.logistic_tasks(1, 10, seed=seed)[0]
    x = np.random.default_rng(seed).normal(size=10)
    kw = dict(alpha=task.alpha, delta=delta, inner_steps=K, normalize=normalize)
    hf = estimators.hf_maml(x, task.inner_grad, task.outer_grad, **kw)
    fob = estimators.fob_maml(x, task.inner_grad, task.outer_grad, scheme="symmetric", **kw)
    assert rel(hf, fob) < 1e-14
    exact = task.meta_grad(x, K)
    assert rel(hf, exact) < 50 * (delta * (1 if normalize else np.linalg.norm(exact))) ** 2 + 1e-12


def test_fob_differs_from_hf_maml_beyond_one_iteration_and_in_other_stencils():
    task = problems.logistic_tasks(1, 10, seed=3)[0]
    x = np.random.default_rng(3).normal(size=10)
    kw = dict(alpha=task.alpha, delta=1e-2, inner_steps=2)
    hf = estimators.hf_maml(x, task.inner_grad, task.outer_grad, **kw)
    for other in (dict(fixed_point_iters=2), dict(scheme=4), dict(scheme="forward")):
        assert rel(estimators.fob_maml(x, task.inner_grad, task.outer_grad, **{"scheme": "symmetric", **kw, **other}),
                   hf) > 1e-10


def test_hvp_oracle_is_checked():
    task = problems.quadratic_tasks(1, 4, seed=0)[0]
    x = np.zeros(4)
    with pytest.raises(ValueError, match="inner_hvp returned non-finite"):
        estimators.maml_hvp(x, task.inner_grad, task.outer_grad, lambda x, v: v * np.nan, alpha=task.alpha)
    with pytest.raises(ValueError, match="inner_hvp returned shape"):
        estimators.maml_hvp(x, task.inner_grad, task.outer_grad, lambda x, v: v[:2], alpha=task.alpha)


# ---------------------------------------------------------------------------------------------
# networks: maml_hvp against double backward


def relu_net():
    torch.manual_seed(0)
    return CNN1D(width=6, depth=3, activation="relu").double()


def gelu_net():
    torch.manual_seed(0)
    return CNN1D(width=6, depth=3, activation="gelu").double()


def kinks_net():
    torch.manual_seed(0)
    return KinkZoo().double()


@pytest.mark.parametrize("make", [relu_net, gelu_net, kinks_net])
@pytest.mark.parametrize("K", [1, 3, 5])
def test_maml_hvp_equals_maml_on_networks(make, K):
    model = make()
    supports, queries = batch_of_episodes(n_tasks=3, seed=K)
    ref = meta_gradient_batch(model, supports, queries, method="maml", alpha=0.1, inner_steps=K)
    for options in (dict(), dict(store_iterates=False), dict(checkpoint_every=2), dict(hvp="reverse")):
        g = meta_gradient_batch(model, supports, queries, method="maml_hvp", alpha=0.1, inner_steps=K, **options)
        assert rel(flat(g).numpy(), flat(ref).numpy()) < 1e-12, options
    for b in range(3):
        one = meta_gradient(model, tuple(t[b] for t in supports), tuple(t[b] for t in queries), method="maml_hvp",
                            alpha=0.1, inner_steps=K, store_iterates=b != 1)
        assert rel(flat(one).numpy(), flat(ref, b).numpy()) < 1e-12


def test_maml_hvp_peak_on_the_meta_device_is_the_cpu_meter():
    torch.manual_seed(0)
    model = CNN1D(width=12, depth=4)
    supports, queries = batch_of_episodes(n_tasks=3, dtype=torch.float32)
    for options in (dict(), dict(store_iterates=False)):
        kw = dict(method="maml_hvp", alpha=0.1, inner_steps=3, **options)
        cpu = measure(lambda: meta_gradient_batch(model, supports, queries, **kw),
                      *model.parameters(), *supports, *queries).peak_bytes
        assert peak_bytes(model, supports, queries, device="meta", **kw) == cpu


def test_maml_hvp_peak_is_flat_in_K_where_maml_grows():
    torch.manual_seed(0)
    model = CNN1D(width=32, depth=4)
    supports, queries = batch_of_episodes(n_tasks=4, dtype=torch.float32)
    peak = {(m, K): peak_bytes(model, supports, queries, method=m, alpha=0.1, inner_steps=K, store_iterates=False)
            if m == "maml_hvp" else peak_bytes(model, supports, queries, method=m, alpha=0.1, inner_steps=K)
            for m in ("maml", "maml_hvp") for K in (2, 8)}
    assert peak["maml", 8] > 2 * peak["maml", 2]
    assert peak["maml_hvp", 8] == peak["maml_hvp", 2] < peak["maml", 2]


def test_options_that_do_not_apply_are_refused():
    model = relu_net()
    supports, queries = batch_of_episodes(n_tasks=2)
    with pytest.raises(ValueError, match="hvp selects maml_hvp"):
        meta_gradient_batch(model, supports, queries, method="maml", alpha=0.1, hvp="reverse")
    with pytest.raises(ValueError, match="hvp must be one of"):
        meta_gradient_batch(model, supports, queries, method="maml_hvp", alpha=0.1, hvp="sideways")
    with pytest.raises(ValueError, match="freeze_pattern=True applies"):
        meta_gradient_batch(model, supports, queries, method="maml_hvp", alpha=0.1, freeze_pattern=True)


# ---------------------------------------------------------------------------------------------
# where only first order is right


class ClassicSiLU(torch.autograd.Function):
    """SiLU written the classic way (``forward(ctx, x)``, no setup_context), twice differentiable."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * s * (1 + x * (1 - s))


class Apply(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x)


def mlp(activation, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), activation, nn.Linear(16, 5)).double()


@pytest.mark.parametrize("method", ["maml", "maml_hvp"])
def test_second_order_refuses_a_once_differentiable_kernel_and_fob_matches_the_native_op(method):
    native, kernel = mlp(nn.SiLU()), mlp(Apply(KernelSiLU))
    supports, queries = batch_of_episodes(n_tasks=3)
    with pytest.raises(ValueError, match=r"KernelSiLU has a @once_differentiable backward.*fob_symmetric"):
        meta_gradient_batch(kernel, supports, queries, method=method, alpha=0.1, inner_steps=2)
    with pytest.raises(ValueError, match="once_differentiable"):
        meta_gradient(kernel, tuple(t[0] for t in supports), tuple(t[0] for t in queries), method=method, alpha=0.1)
    ref = flat(meta_gradient_batch(native, supports, queries, method="maml", alpha=0.1, inner_steps=2)).numpy()
    fob = meta_gradient_batch(kernel, supports, queries, method="fob_symmetric", alpha=0.1, inner_steps=2, delta=1e-5)
    fo = meta_gradient_batch(kernel, supports, queries, method="fo_maml", alpha=0.1, inner_steps=2)
    assert rel(flat(fob).numpy(), ref) < 1e-8 < 1e-3 < rel(flat(fo).numpy(), ref)


@pytest.mark.parametrize("method", ["maml", "maml_hvp", "fo_maml", "reptile", "fob_forward", "fob_symmetric"])
def test_a_classic_custom_function_runs_task_by_task(method):
    native, classic = mlp(nn.SiLU()), mlp(Apply(ClassicSiLU))
    supports, queries = batch_of_episodes(n_tasks=3)
    kw = dict(method=method, alpha=0.1, inner_steps=2, delta=1e-5)
    with pytest.warns(UserWarning, match=r"ClassicSiLU \(custom autograd.Function without setup_context\)"):
        g = meta_gradient_batch(classic, supports, queries, **kw)
    assert rel(flat(g).numpy(), flat(meta_gradient_batch(native, supports, queries, **kw)).numpy()) < 1e-9


def test_adapted_accuracy_with_a_classic_custom_function():
    native, classic = mlp(nn.SiLU()), mlp(Apply(ClassicSiLU))
    supports, queries = batch_of_episodes(n_tasks=3)
    with pytest.warns(UserWarning, match="ClassicSiLU"):
        meta_gradient_batch(classic, supports, queries, method="fo_maml", alpha=0.1)
    assert torch.equal(adapted_accuracy(classic, supports, queries, alpha=0.5, inner_steps=2),
                       adapted_accuracy(native, supports, queries, alpha=0.5, inner_steps=2))


def test_the_benchmark_baselines_compute_the_meta_gradient():
    """bench_meta's plain-autograd HVP recursion (the baseline of the speed table) is MAML."""
    from fobtheory.experiments.bench_meta import _plain

    model = gelu_net()
    supports, queries = batch_of_episodes(n_tasks=1)
    support, query = tuple(t[0] for t in supports), tuple(t[0] for t in queries)
    ref = torch.cat([g.reshape(-1) for g in _plain(model, support, query, "maml", 0.1, 3, 1e-3)])
    hvp = torch.cat([g.reshape(-1) for g in _plain(model, support, query, "maml_hvp", 0.1, 3, 1e-3)])
    assert rel(hvp.numpy(), ref.numpy()) < 1e-12


def test_an_op_without_second_derivatives_is_named_and_fob_matches_the_reference_kernel():
    """CPU attention runs a fused kernel with no double backward and no forward-mode rule:
    the second-order methods name it; FO-B matches MAML on the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fobtheory.experiments.second_order_cuda_check import Attention

    torch.manual_seed(0)
    model = Attention(dim=8).double()
    supports, queries = batch_of_episodes(n_tasks=2)
    kw = dict(alpha=0.1, inner_steps=2, delta=1e-5)
    for method, options, match in (("maml", {}, "second derivatives of aten::_scaled_dot_product_flash_attention"),
                                   ("maml_hvp", {}, "forward-mode derivatives of .*fob_symmetric.*hvp='reverse'"),
                                   ("maml_hvp", dict(hvp="reverse"), "second derivatives of .*fob_symmetric")):
        with pytest.raises(ValueError, match=match):
            meta_gradient_batch(model, supports, queries, method=method, **kw, **options)
    with sdpa_kernel(SDPBackend.MATH):
        ref = flat(meta_gradient_batch(model, supports, queries, method="maml", **kw)).numpy()
    assert rel(flat(meta_gradient_batch(model, supports, queries, method="fob_symmetric", **kw)).numpy(), ref) < 1e-7
