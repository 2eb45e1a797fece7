"""A ResNet-style network as users bring it (BasicBlocks with BatchNorm, one in-place ReLU
module applied twice per block, residual adds, a max-pooling stem, adaptive average pooling):
every method against autograd's MAML, batched and one task at a time, and FO-B's defaults."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fobtheory.nn import ALL_METHODS, PLAIN_DIFFERENCES, meta_gradient, meta_gradient_batch
from fobtheory.patterns import PatternHooks, kinked_modules

ALPHA, K, TASKS = 0.01, 2, 3


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv-BN-ReLU-conv-BN, plus the (projected) input, then ReLU;
    ``self.relu`` is one in-place module called twice."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """Stem (conv-BN-ReLU-MaxPool), two BasicBlocks (the second strided, widening), adaptive
    average pooling, a linear head: ResNet-18's structure at 8 channels on 12 x 12 images."""

    def __init__(self, width=8, n_classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.layer1, self.layer2 = BasicBlock(width, width), BasicBlock(width, 2 * width, stride=2)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2 * width, n_classes)

    def forward(self, x):
        return self.fc(self.avgpool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def episodes(dtype, n_support=10, n_query=10, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(TASKS, n_support, 1, size, size, generator=g, dtype=torch.float64).to(dtype)
    xq = torch.randn(TASKS, n_query, 1, size, size, generator=g, dtype=torch.float64).to(dtype)
    labels = lambda n: (torch.arange(n) % 5).repeat(TASKS, 1)  # noqa: E731
    return (xs, labels(n_support)), (xq, labels(n_query))


@pytest.fixture(scope="module")
def nets():
    """The same ResNet in float64 and float32, the episodes and MAML's meta-gradients in each
    (float32 against float32: a unit within roundoff of its kink may take another piece)."""
    torch.manual_seed(0)
    net64 = ResNet().double()
    models = {torch.float64: net64, torch.float32: copy.deepcopy(net64).float()}
    data = {dtype: episodes(dtype) for dtype in models}
    reference = {dtype: flat(meta_gradient_batch(models[dtype], *data[dtype], method="maml", alpha=ALPHA,
                                                 inner_steps=K)) for dtype in models}
    return models, data, reference


def flat(grads):
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1).to(torch.float64)


def one_by_one(model, supports, queries, **kw):
    """Each task through ``meta_gradient``, stacked like a batch."""
    rows = [meta_gradient(model, (supports[0][b], supports[1][b]), (queries[0][b], queries[1][b]), **kw)
            for b in range(TASKS)]
    return flat({n: torch.stack([r[n] for r in rows]) for n in rows[0]})


def relative(g, reference):
    return ((g - reference).norm(dim=1) / reference.norm(dim=1)).max().item()


def by_autograd(model, supports, queries, method):
    """MAML (``create_graph=True`` through the K steps), FO-MAML and Reptile written out with
    ``torch.autograd.grad`` on a copy of the model, one task at a time (BatchNorm with each
    set's batch statistics, as MAML's inner loop uses them)."""
    net = copy.deepcopy(model)
    names = [n for n, _ in net.named_parameters()]

    def grad(params, x, y, create_graph=False):
        loss = F.cross_entropy(functional_call(net, dict(zip(names, params)), (x,)), y)
        return torch.autograd.grad(loss, params, create_graph=create_graph)

    rows = []
    for b in range(TASKS):
        (xs, ys), (xq, yq) = (supports[0][b], supports[1][b]), (queries[0][b], queries[1][b])
        theta = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
        u = theta
        if method == "maml":
            for _ in range(K):
                u = [w - ALPHA * g for w, g in zip(u, grad(u, xs, ys, create_graph=True))]
            out = torch.autograd.grad(F.cross_entropy(functional_call(net, dict(zip(names, u)), (xq,)), yq), theta)
        else:
            for _ in range(K if method == "fo_maml" else K + 1):
                g = grad(u, xs, ys)
                if method == "reptile":
                    g = [a + c for a, c in zip(g, grad(u, xq, yq))]
                u = [(w - ALPHA * gi).detach().requires_grad_(True) for w, gi in zip(u, g)]
            out = grad(u, xq, yq) if method == "fo_maml" else [(t - w) / ((K + 1) * ALPHA) for t, w in zip(theta, u)]
        rows.append(torch.cat([o.reshape(-1) for o in out]))
    return torch.stack(rows).to(torch.float64)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_batched_and_one_task_at_a_time_against_independent_truth(nets, method):
    models, data, references = nets
    model, (supports, queries), reference = models[torch.float64], data[torch.float64], references[torch.float64]
    kw = dict(method=method, alpha=ALPHA, inner_steps=K, **({"delta": 1e-5} if method.startswith("fob_") else {}))
    batched, single = flat(meta_gradient_batch(model, supports, queries, **kw)), one_by_one(model, supports, queries,
                                                                                            **kw)
    assert relative(batched, single) < 1e-10, method
    # FO-MAML and Reptile against their own definitions; the others compute MAML (exactly, or frozen FO-B at
    # delta 1e-5): against MAML written out (the fixture's reference, by the test below)
    truth = by_autograd(model, supports, queries, method) if method in ("fo_maml", "reptile") else reference
    bound = {"fob_symmetric": 1e-8, "fob_forward": 1e-5}.get(method, 1e-10)
    assert relative(batched, truth) < bound and relative(single, truth) < bound, method


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_reference_is_maml_written_out_with_autograd(nets, dtype):
    models, data, references = nets
    bound = 1e-12 if dtype == torch.float64 else 1e-5
    assert relative(by_autograd(models[dtype], *data[dtype], "maml"), references[dtype]) < bound


@pytest.mark.parametrize("method", ["fob_symmetric", "fob_forward"])
def test_the_default_freezes_the_patterns_of_a_resnet_and_matches_maml_in_float32(nets, method):
    models, data, references = nets
    model, (supports, queries), reference = models[torch.float32], data[torch.float32], references[torch.float32]
    kw = dict(method=method, alpha=ALPHA, inner_steps=K)  # the default delta
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every kink is in a module: nothing to warn about
        default = flat(meta_gradient_batch(model, supports, queries, **kw))
        single = one_by_one(model, supports, queries, **kw)
    assert torch.equal(default, flat(meta_gradient_batch(model, supports, queries, freeze_pattern=True, **kw)))
    assert torch.equal(single, one_by_one(model, supports, queries, freeze_pattern=True, **kw))
    assert relative(default, reference) < 1e-3 and relative(single, reference) < 1e-3


def test_plain_differences_on_a_resnet_in_float32_are_far_from_maml_and_say_so(nets):
    models, data, references = nets
    model, (supports, queries), reference = models[torch.float32], data[torch.float32], references[torch.float32]
    kw = dict(alpha=ALPHA, inner_steps=K, freeze_pattern=False)
    with pytest.warns(UserWarning, match=rf"of {TASKS * K} task-steps disagree .* cross kinks \(MaxPool2d, ReLU\)"):
        plain = flat(meta_gradient_batch(model, supports, queries, method="fob_symmetric", **kw))
    assert relative(plain, reference) > 0.1  # what the check is for
    with pytest.warns(UserWarning, match="fob_forward runs plain finite differences"):
        meta_gradient_batch(model, supports, queries, method="fob_forward", **kw)
    unchecked = meta_gradient_batch(model, supports, queries, method="fob_symmetric", alpha=ALPHA, inner_steps=K,
                                    **PLAIN_DIFFERENCES)
    assert torch.equal(flat(unchecked), plain)  # the check changes nothing


def test_a_module_called_twice_records_one_pattern_per_call_and_replays_them_exactly(nets):
    models, data, _ = nets
    model, x = models[torch.float64], data[torch.float64][0][0][0]
    with PatternHooks(model) as hooks:
        with hooks.recording() as patterns:
            out = model(x)
        with hooks.replaying(patterns):
            replayed = model(x)
    assert len(kinked_modules(model)) == 4 and len(patterns) == 6  # 3 ReLU modules, 5 ReLU calls, 1 max-pooling
    assert torch.equal(replayed, out)
