"""The model as users write it (BatchNorm, buffers, custom Functions) and the data they get
wrong: every method runs or fails with an error that names the cause, never a NaN."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fobtheory.nn import ALL_METHODS, CNN1D, Conv4, adapted_accuracy, meta_gradient, meta_gradient_batch

from test_patterns import batch_of_episodes

FROZEN = {"fob_forward", "fob_symmetric"}


def bn_net(seed=0, dtype=torch.float64):
    """MAML's Conv4 backbone (conv - BatchNorm - ReLU - MaxPool2d, four times), BatchNorm with
    its running statistics on (the default), on 16x16 images."""
    torch.manual_seed(seed)
    return Conv4(width=4, size=16).to(dtype)


def images(n_tasks=3, seed=0):
    return batch_of_episodes(n_tasks=n_tasks, length=16, height=16, seed=seed)


def flat(grads, row=None):
    return torch.cat([(g if row is None else g[row]).reshape(-1) for g in grads.values()])


def rel(a, b):
    return float((a - b).norm() / b.norm())


def manual_maml(model, support, query, alpha, K):
    """MAML on a copy of the model without running statistics, by create_graph=True: the batch
    statistics of the set at hand, written independently of fobtheory."""
    import copy

    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    params = dict(plain.named_parameters())
    fast = params
    for _ in range(K):
        g = torch.autograd.grad(F.cross_entropy(functional_call(plain, fast, (support[0],)), support[1]),
                                list(fast.values()), create_graph=True)
        fast = {n: w - alpha * gi for (n, w), gi in zip(fast.items(), g)}
    g = torch.autograd.grad(F.cross_entropy(functional_call(plain, fast, (query[0],)), query[1]),
                            list(params.values()))
    return torch.cat([t.reshape(-1) for t in g])


@pytest.mark.parametrize("method", ALL_METHODS)
def test_batchnorm_runs_every_method_on_both_paths_and_leaves_buffers_alone(method):
    model = bn_net()
    supports, queries = images()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    kw = dict(method=method, alpha=0.1, inner_steps=2, delta=1e-6)
    if method in FROZEN:
        kw["freeze_pattern"] = True
    batch = meta_gradient_batch(model, supports, queries, **kw)
    for b in range(2):
        one = meta_gradient(model, tuple(t[b] for t in supports), tuple(t[b] for t in queries), **kw)
        assert rel(flat(one), flat(batch, b)) < 1e-9
        if method in {"maml", "maml_hvp"} | FROZEN:
            exact = manual_maml(model, tuple(t[b] for t in supports), tuple(t[b] for t in queries), 0.1, 2)
            tolerance = {"maml": 1e-12, "maml_hvp": 1e-12, "fob_symmetric": 1e-7, "fob_forward": 1e-5}[method]
            assert rel(flat(batch, b), exact) < tolerance  # forward: O(delta), symmetric: O(delta^2) + roundoff
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())


def test_batchnorm_in_eval_mode_uses_the_running_statistics():
    model = bn_net()
    supports, queries = images()
    with torch.no_grad():  # running statistics that differ from any batch's
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    model.eval()
    g = flat(meta_gradient(model, tuple(t[0] for t in supports), tuple(t[0] for t in queries), method="maml",
                           alpha=0.1))
    params = dict(model.named_parameters())
    gi = torch.autograd.grad(F.cross_entropy(model(supports[0][0]), supports[1][0]), list(params.values()),
                             create_graph=True)
    fast = {n: w - 0.1 * x for (n, w), x in zip(params.items(), gi)}
    exact = torch.autograd.grad(F.cross_entropy(functional_call(model, fast, (queries[0][0],)), queries[1][0]),
                                list(params.values()))
    assert rel(g, torch.cat([t.reshape(-1) for t in exact])) < 1e-12
    model.train()
    assert rel(flat(meta_gradient(model, tuple(t[0] for t in supports), tuple(t[0] for t in queries),
                                  method="maml", alpha=0.1)), g) > 1e-3
    assert adapted_accuracy(model, *images(), alpha=0.1).shape == (3,)


class Counter(nn.Module):
    """A module that writes a buffer in its forward."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        self.calls.add_(1)
        return x


@pytest.mark.parametrize("batched", [True, False])
def test_a_module_that_writes_its_buffers_is_named(batched):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), Counter(), nn.Linear(40, 5)).double()
    supports, queries = batch_of_episodes(n_tasks=2)
    with pytest.raises(ValueError, match=r"module\(s\) 1 \(Counter\) write their buffers \['1.calls'\]"):
        if batched:
            meta_gradient_batch(model, supports, queries, method="fo_maml", alpha=0.1)
        else:
            meta_gradient(model, tuple(t[0] for t in supports), tuple(t[0] for t in queries), method="fo_maml",
                          alpha=0.1)
    assert float(model[1].calls) == 0


# ---------------------------------------------------------------------------------------------
# bad input


def cnn():
    torch.manual_seed(0)
    return CNN1D(width=6, depth=3).double()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_non_finite_data_and_a_diverging_inner_loop_raise_for_every_method(method):
    model = cnn()
    supports, queries = batch_of_episodes(n_tasks=2)
    bad = supports[0].clone()
    bad[1, 3, 0, 7] = float("nan")
    with pytest.raises(ValueError, match=r"supports\[0\] has NaN or infinite entries"):
        meta_gradient_batch(model, (bad, supports[1]), queries, method=method, alpha=0.1)
    with pytest.raises(ValueError, match=r"query\[0\] has NaN"):
        meta_gradient(model, (supports[0][0], supports[1][0]), (bad[1], supports[1][0]), method=method, alpha=0.1)
    model, (xs, ys), (xq, yq) = model.float(), *((x.float(), y) for x, y in (supports, queries))
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) at (inner|Reptile) step 2"):
        meta_gradient_batch(model, (xs, ys), (xq, yq), method=method, alpha=1e6, inner_steps=3)


def test_labels_shapes_and_dtypes_are_checked_before_any_transform():
    model = cnn()
    supports, queries = batch_of_episodes(n_tasks=2)
    call = lambda s, q, **kw: meta_gradient_batch(model, s, q, method="maml", alpha=0.1, **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"queries\[1\] holds labels in \[1, 5\], the model outputs 5 classes"):
        call(supports, (queries[0], queries[1] + 1))
    with pytest.raises(ValueError, match=r"supports\[1\] must hold integer class labels"):
        call((supports[0], supports[1].double()), queries)
    with pytest.raises(ValueError, match=r"supports\[0\] of shape \(10, 1, 30\) \(one task's inputs\) does not fit"):
        call((supports[0][..., :30], supports[1]), queries)
    with pytest.raises(ValueError, match=r"supports\[0\] has dtype torch.float32 on cpu, the model's parameters "
                                         r"torch.float64"):
        call((supports[0].float(), supports[1]), queries)
    with pytest.raises(ValueError, match="same number of tasks"):
        call(supports, tuple(t[:1] for t in queries))
    with pytest.raises(ValueError, match=r"supports must be x of shape \(tasks, samples, \.\.\.\) with labels"):
        call((supports[0], supports[1][:, :4]), queries)
    with pytest.raises(ValueError, match=r"queries must be an \(x, y\) pair of tensors"):
        call(supports, queries[0])
