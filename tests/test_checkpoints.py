"""FO-B-MAML's ``checkpoint_every``: the estimate of stored iterates, bit for bit, for a
counted number of extra gradient calls and a peak memory between the two extremes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fobtheory.estimators import fob_maml
from fobtheory.memory import peak_bytes
from fobtheory.nn import CNN1D, meta_gradient_batch
from fobtheory.problems import logistic_tasks

TASKS = logistic_tasks(3, 6, seed=2)


def extra_calls(K, c):
    """Each x_k recomputed from its checkpoint c floor(k/c): k mod c calls."""
    return sum(k % c for k in range(K))


def stacked(name, backend=np):
    """The vectorised oracle of the task batch: row r of the input belongs to task r mod B."""
    def oracle(points):
        rows = [getattr(TASKS[r % len(TASKS)], name)(np.asarray(p)) for r, p in enumerate(points)]
        return np.stack(rows) if backend is np else torch.as_tensor(np.stack(rows))
    return oracle


@settings(max_examples=40, deadline=None)
@given(K=st.integers(1, 7), c=st.integers(1, 9), seed=st.integers(0, 2**31),
       options=st.sampled_from([dict(scheme="symmetric"), dict(scheme="forward", normalize=True),
                                dict(scheme=4), dict(scheme="complex"), dict(scheme="symmetric", fixed_point_iters=2),
                                dict(scheme="symmetric", normalize=True, kink_tol=1e-9)]))
def test_numpy_single_task_is_bit_identical_for_the_counted_extra_calls(K, c, seed, options):
    task = TASKS[0]
    x = np.random.default_rng(seed).standard_normal(task.dim)
    kw = dict(alpha=task.alpha, delta=1e-3, inner_steps=K, return_info=True, **options)
    stored, a = fob_maml(x, task.inner_grad, task.outer_grad, **kw)
    kept, b = fob_maml(x, task.inner_grad, task.outer_grad, checkpoint_every=c, **kw)
    np.testing.assert_array_equal(stored, kept)
    assert b.outer_grad_calls == a.outer_grad_calls
    assert b.inner_grad_calls == a.inner_grad_calls + extra_calls(K, c)
    assert (b.kink_retries, b.kink_unresolved) == (a.kink_retries, a.kink_unresolved)


@pytest.mark.parametrize("stack", [True, False])
@pytest.mark.parametrize("scheme", ["forward", "symmetric"])
def test_torch_batches_are_bit_identical_for_every_c(scheme, stack):
    X = torch.linspace(-1, 1, 3 * 6, dtype=torch.float64).reshape(3, 6)
    K = 5
    kw = dict(alpha=TASKS[0].alpha, delta=1e-4, scheme=scheme, inner_steps=K, batched=True, normalize=True,
              stack_stencil=stack, return_info=True)
    inner, outer = stacked("inner_grad", torch), stacked("outer_grad", torch)
    stored, a = fob_maml(X, inner, outer, **kw)
    recomputed, _ = fob_maml(X, inner, outer, store_iterates=False, **kw)
    assert torch.equal(stored, recomputed)
    for c in range(1, K + 2):
        kept, b = fob_maml(X, inner, outer, checkpoint_every=c, **kw)
        assert torch.equal(stored, kept), c
        assert b.inner_grad_calls == a.inner_grad_calls + extra_calls(K, c)


def test_c_one_is_stored_iterates_and_c_at_least_K_keeps_x0_only():
    task = TASKS[1]
    x, K = np.linspace(-1, 1, task.dim), 6
    kw = dict(alpha=task.alpha, delta=1e-3, scheme="symmetric", inner_steps=K, return_info=True)
    calls = lambda **o: fob_maml(x, task.inner_grad, task.outer_grad, **kw, **o)[1].grad_calls  # noqa: E731
    assert calls(checkpoint_every=1) == calls() == 3 * K + 1
    # from x_0 alone: the K(K-1)/2 calls of store_iterates=False (the symmetric stencil needs no grad f(x_k))
    lean = 3 * K + 1 + K * (K - 1) // 2
    assert calls(checkpoint_every=K) == calls(checkpoint_every=10 * K) == calls(store_iterates=False) == lean


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_checkpoint_every_must_be_a_positive_integer(value):
    task = TASKS[0]
    with pytest.raises(ValueError, match=r"checkpoint_every must be an integer >= 1"):
        fob_maml(np.ones(task.dim), task.inner_grad, task.outer_grad, alpha=task.alpha, delta=1e-3,
                 checkpoint_every=value)


def test_checkpoint_every_contradicts_store_iterates_false():
    task = TASKS[0]
    with pytest.raises(ValueError, match=r"checkpoint_every .* store_iterates=False"):
        fob_maml(np.ones(task.dim), task.inner_grad, task.outer_grad, alpha=task.alpha, delta=1e-3,
                 checkpoint_every=2, store_iterates=False)


def test_network_peak_lies_between_recomputing_everything_and_storing_everything():
    """On a CNN (CPU meter): storing every iterate is the top, recomputing from x_0 the
    bottom, and the peak never grows as checkpoints thin out; results stay bit-identical."""
    torch.manual_seed(0)
    B, K, model = 3, 6, CNN1D(width=24, depth=3)
    S = (torch.randn(B, 5, 1, 40), torch.randint(0, 5, (B, 5)))
    Q = (torch.randn(B, 10, 1, 40), torch.randint(0, 5, (B, 10)))
    kw = dict(method="fob_symmetric", alpha=0.4, inner_steps=K, stack_stencil=False)

    def peak(**options):
        return peak_bytes(model, S, Q, device="cpu", **kw, **options)

    top, bottom = peak(store_iterates=True), peak(store_iterates=False)
    peaks = [peak(checkpoint_every=c) for c in range(1, K + 1)]
    assert peaks[0] == top and peaks[-1] == bottom and top > bottom
    assert all(a >= b for a, b in zip(peaks, peaks[1:]))
    vector = 4 * B * sum(p.numel() for p in model.parameters())
    assert peaks[2] < top - 2 * vector  # c = 3: 2 stored iterates instead of 6
    reference = meta_gradient_batch(model, S, Q, **kw)
    for c in (2, 4):
        assert all(torch.equal(reference[n], g) for n, g in meta_gradient_batch(model, S, Q, checkpoint_every=c,
                                                                                   **kw).items())
