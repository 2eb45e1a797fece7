"""Conv4, MAML's image backbone: its layers, its errors, and MAML through its BatchNorm
against a hand-written double backward."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fobtheory.models import Conv4
from fobtheory.nn import meta_gradient_batch


@pytest.mark.parametrize("channels, size, side", [(1, 28, 1), (3, 84, 5), (3, 32, 2)])
def test_conv4_is_four_conv_bn_relu_pool_blocks_and_a_head(channels, size, side):
    net = Conv4(width=8, n_classes=7, channels=channels, size=size)
    kinds = [type(m) for m in net.features]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d] * 4
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == \
        [(channels, 8, (3, 3), (1, 1))] + [(8, 8, (3, 3), (1, 1))] * 3
    bns = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    assert all(b.affine and b.track_running_stats for b in bns)  # as users write it
    assert net.head.in_features == 8 * side * side and net(torch.randn(2, channels, size, size)).shape == (2, 7)
    plain = Conv4(width=8, channels=channels, size=size, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_conv4_names_its_bad_arguments():
    with pytest.raises(ValueError, match="size=15 pools to nothing.*size must be >= 16"):
        Conv4(size=15)
    for name in ("width", "n_classes", "channels", "size"):
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
            Conv4(**{name: 0})
    with pytest.raises(ValueError, match="batch_norm must be True or False"):
        Conv4(batch_norm="yes")


def manual_conv4(params, x):
    """Conv4 written out with F.conv2d and F.batch_norm on the batch's statistics (training
    mode, no running buffers), independent of Conv4.forward and functional_call."""
    for i in range(4):
        w, b, gamma, beta = params[4 * i: 4 * i + 4]
        x = F.batch_norm(F.conv2d(x, w, b, padding=1), None, None, gamma, beta, training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return F.linear(x.flatten(1), params[16], params[17])


def test_maml_through_batch_norm_equals_the_hand_written_double_backward():
    torch.manual_seed(0)
    net = Conv4(width=4, n_classes=3, size=16).double()
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    g = torch.Generator().manual_seed(1)
    B, alpha, K = 2, 0.3, 2
    S = (torch.randn(B, 6, 1, 16, 16, generator=g, dtype=torch.float64), torch.arange(6).remainder(3).repeat(B, 1))
    Q = (torch.randn(B, 9, 1, 16, 16, generator=g, dtype=torch.float64), torch.arange(9).remainder(3).repeat(B, 1))
    got = meta_gradient_batch(net, S, Q, method="maml", alpha=alpha, inner_steps=K)
    for b in range(B):
        theta = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
        fast = theta
        for _ in range(K):
            grads = torch.autograd.grad(F.cross_entropy(manual_conv4(fast, S[0][b]), S[1][b]), fast, create_graph=True)
            fast = [w - alpha * d for w, d in zip(fast, grads)]
        want = torch.autograd.grad(F.cross_entropy(manual_conv4(fast, Q[0][b]), Q[1][b]), theta)
        for (name, _), w in zip(net.named_parameters(), want):
            torch.testing.assert_close(got[name][b], w, rtol=1e-10, atol=1e-12)
    assert all(torch.equal(v, buffers[k]) for k, v in net.named_buffers())  # running statistics untouched


def test_conv4_fidelity_quick_run_writes_its_records_floors_and_figure(tmp_path):
    from fobtheory.experiments import execute

    results = execute("conv4-fidelity", quick=True, out=tmp_path, echo=lambda *_: None)
    s, cfg = results["summary"], results["config"]
    assert set(s["floors"]) == set(cfg["deltas"]) and (tmp_path / "conv4_fidelity.png").exists()
    assert s["floors"]["float64"]["max_error"] < 1e-6  # frozen symmetric in float64, any checkpoint
    assert {c["id"] for c in results["claims"]} >= {"conv4_frozen_pattern_max_error_float64",
                                                    "conv4_frozen_at_maml_float32_floor"}
