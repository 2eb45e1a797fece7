"""The peak-memory meter against hand counts, and the memory experiment on a tiny grid."""
import pytest
import torch
import torch.nn.functional as F

from fobtheory.estimators import FixedPointError, fob_maml
from fobtheory.experiments import execute, memory
from fobtheory.memory import PeakMemory, measure, peak_bytes
from fobtheory.nn import CNN1D, PLAIN_DIFFERENCES, meta_gradient_batch
from fobtheory.results import load_results

F32 = 4  # bytes


def test_single_linear_layer_matches_the_hand_count():
    """loss = sum((X W^T + b) * C). The peak is at the product: X, W, b, C, the layer output
    and the product (the output is freed once the product exists; backward needs only C)."""
    n, d_in, d_out = 2000, 300, 500
    X, C = torch.randn(n, d_in), torch.randn(n, d_out)
    W, b = torch.randn(d_out, d_in, requires_grad=True), torch.randn(d_out, requires_grad=True)

    def step():
        return torch.autograd.grad((torch.addmm(b, X, W.t()) * C).sum(), (W, b))

    hand = F32 * (n * d_in + d_out * d_in + d_out + n * d_out + 2 * n * d_out)
    backward = F32 * (n * d_in + d_out * d_in + d_out + n * d_out + n * d_out + d_out * d_in)  # smaller: check
    assert backward < hand
    peak = measure(step, X, C, W, b).peak_bytes
    assert peak == pytest.approx(hand, rel=0.05)


def test_two_layer_network_matches_the_hand_count():
    """relu(X W1^T + b1) W2^T + b2 with cross-entropy: the peak is in backward through the
    ReLU, where its saved output h, the incoming gradient and the outgoing gradient (each
    n x hidden) are alive together, besides the inputs and parameters."""
    n, d_in, hidden, classes = 2000, 10, 1000, 10
    X, y = torch.randn(n, d_in), torch.randint(0, classes, (n,))
    params = [torch.randn(hidden, d_in), torch.randn(hidden), torch.randn(classes, hidden), torch.randn(classes)]
    params = [p.requires_grad_() for p in params]

    def step():
        W1, b1, W2, b2 = params
        return torch.autograd.grad(F.cross_entropy(F.linear(torch.relu(F.linear(X, W1, b1)), W2, b2), y), params)

    big = 3 * n * hidden * F32
    small = (n * d_in + sum(p.numel() for p in params)) * F32 + n * 8  # inputs, parameters, int64 labels
    peak = measure(step, X, y, *params).peak_bytes
    assert peak == pytest.approx(big + small, rel=0.05)


def test_readings_are_identical_across_runs_and_views_count_once():
    torch.manual_seed(0)
    model = CNN1D(width=8)
    S = (torch.randn(2, 10, 1, 40), torch.randint(0, 5, (2, 10)))
    Q = (torch.randn(2, 15, 1, 40), torch.randint(0, 5, (2, 15)))
    for method in ("maml", "fob_symmetric"):
        readings = {measure(lambda: meta_gradient_batch(model, S, Q, method=method, alpha=0.4, inner_steps=3),
                            *model.parameters()).peak_bytes for _ in range(3)}
        assert len(readings) == 1
    base = torch.zeros(1000)
    with PeakMemory(base) as meter:
        views = [base[:500], base.view(10, 100), base[::2]]  # noqa: F841
        _ = base + 1
    assert meter.peak == 2 * 1000 * F32


def test_freed_tensors_leave_the_count():
    with PeakMemory() as meter:
        a = torch.ones(1000)
        del a
        b = torch.ones(1000)  # noqa: F841
    assert meter.peak == 1000 * F32 and meter.current == 1000 * F32


def test_memory_experiment_on_a_tiny_grid(tmp_path):
    overrides = dict(settings={"tiny": dict(depth=3, meta_batch=2, shots=1, queries=2)}, widths=[4, 8],
                     inner_steps=[1, 3], repeats=1)
    execute("memory", quick=True, out=tmp_path, overrides=overrides, echo=lambda *_: None)
    res = load_results(tmp_path / "memory.json")
    assert (tmp_path / "memory.png").stat().st_size > 0
    rows = res["records"]
    assert len(rows) == 2 * 2 * len(memory.VARIANTS)
    for r in rows:
        assert {"method", "width", "depth", "inner_steps", "meta_batch", "peak_bytes", "seconds"} <= set(r)
        assert r["peak_bytes"] > 0 and r["seconds"] > 0
    peak = {(r["variant"], r["width"], r["inner_steps"]): r["peak_bytes"] for r in rows}
    assert peak[("maml", 8, 3)] > peak[("maml", 8, 1)]  # second order keeps every step's graph
    assert peak[("fob_symmetric_lean", 8, 3)] == peak[("fob_symmetric_lean", 8, 1)] or \
        peak[("fob_symmetric_lean", 8, 3)] < 1.05 * peak[("fob_symmetric_lean", 8, 1)]
    assert {c["id"] for c in res["claims"]} >= {"maml_memory_grows", "fob_memory_flat_in_K_lean"}
    # recomputing x_k from x_0 holds one more parameter vector than K = 1 needs, and no more as K grows
    assert peak[("maml_hvp_lean", 8, 3)] < 1.1 * peak[("maml_hvp_lean", 8, 1)] < peak[("maml", 8, 3)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_meter_agrees_with_cuda_max_memory_allocated():
    torch.manual_seed(0)
    model = CNN1D(width=128, depth=6).cuda()
    S = (torch.randn(8, 25, 1, 40, device="cuda"), torch.randint(0, 5, (8, 25), device="cuda"))
    Q = (torch.randn(8, 75, 1, 40, device="cuda"), torch.randint(0, 5, (8, 75), device="cuda"))
    for method in ("maml", "fob_symmetric"):
        fn = lambda: meta_gradient_batch(model, S, Q, method=method, alpha=0.4, inner_steps=5)  # noqa: E731
        fn()
        m = measure(fn, *model.parameters(), *S, *Q, device="cuda")
        # max_memory_allocated counts from the baseline (parameters and data already allocated)
        base = sum(t.untyped_storage().nbytes() for t in (*model.parameters(), *S, *Q))
        assert m.peak_bytes == pytest.approx(m.cuda_max_allocated + base, rel=0.10)


def test_lean_fob_holds_at_most_two_parameter_vectors_beyond_fo_maml_at_any_K():
    """Recomputed iterates, one stencil point alive at a time: FO-B symmetric's peak exceeds
    FO-MAML's by at most two parameter vectors per task, whatever K."""
    torch.manual_seed(0)
    B, model = 4, CNN1D(width=64, depth=3)
    S = (torch.randn(B, 5, 1, 40), torch.randint(0, 5, (B, 5)))
    Q = (torch.randn(B, 5, 1, 40), torch.randint(0, 5, (B, 5)))
    vector = 4 * B * sum(p.numel() for p in model.parameters())

    def peak(method, K, **options):
        fn = lambda: meta_gradient_batch(model, S, Q, method=method, alpha=0.4, inner_steps=K, **options)  # noqa: E731
        fn()
        return measure(fn, *model.parameters(), *S, *Q).peak_bytes

    lean = {K: peak("fob_symmetric", K, store_iterates=False, stack_stencil=False, **PLAIN_DIFFERENCES)
            for K in (1, 3, 6)}
    for K, bytes_ in lean.items():
        assert bytes_ - peak("fo_maml", K) <= 2.05 * vector
    assert lean[6] == lean[3]
    # the default freezes the activation patterns: one more forward pass records each anchor's, still flat in K
    frozen = {K: peak("fob_symmetric", K, store_iterates=False, stack_stencil=False) for K in (3, 6)}
    assert frozen[6] == frozen[3]


# ---------------------------------------------------------------------------------------------
# shape-only (meta device) peaks against the CPU meter

# The default freezes the patterns of CNN1D's ReLUs; freeze_pattern=False alone runs plain differences with the
# kink check; kink_tol this small retries every plain step on CPU too: the worst case
FOB_OPTIONS = ([dict(store_iterates=s, stack_stencil=t) for s in (True, False) for t in (True, False)]
               + [dict(checkpoint_every=2, stack_stencil=False), dict(PLAIN_DIFFERENCES), dict(freeze_pattern=False),
                  dict(kink_tol=1e-9, **PLAIN_DIFFERENCES)])


def small_batch(B=3, width=12, length=40):
    torch.manual_seed(0)
    model = CNN1D(width=width, depth=3, length=length)
    S = (torch.randn(B, 5, 1, length), torch.randint(0, 5, (B, 5)))
    Q = (torch.randn(B, 15, 1, length), torch.randint(0, 5, (B, 15)))
    return model, S, Q


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("method, options", [("maml", {}), ("fo_maml", {}), ("reptile", {})]
                         + [(m, o) for m in ("fob_forward", "fob_symmetric") for o in FOB_OPTIONS])
def test_shape_only_peak_equals_the_cpu_meter_to_the_byte(method, options, K):
    model, S, Q = small_batch()
    kw = dict(method=method, alpha=0.4, inner_steps=K, **options)
    cpu = peak_bytes(model, S, Q, device="cpu", **kw)
    assert peak_bytes(model, S, Q, **kw) == cpu
    assert all(p.device.type == "cpu" for p in model.parameters())  # copied, not moved


def test_the_kink_guard_is_its_worst_case_on_meta():
    """Without a retry on CPU the meta peak is an upper bound (every step retried three times);
    with retries on CPU the two agree."""
    model, S, Q = small_batch()
    kw = dict(method="fob_symmetric", alpha=0.4, inner_steps=3)
    _, info = meta_gradient_batch(model, S, Q, kink_tol=1e9, return_info=True, **kw)
    assert info.kink_retries == 0
    never = peak_bytes(model, S, Q, device="cpu", kink_tol=1e9, **kw)
    assert peak_bytes(model, S, Q, kink_tol=1e9, **kw) == peak_bytes(model, S, Q, kink_tol=1e-9, **kw) > never
    with torch.device("meta"):
        meta_model = CNN1D(width=12, depth=3)
    meta_S, meta_Q = tuple(t.to("meta") for t in S), tuple(t.to("meta") for t in Q)
    _, info = meta_gradient_batch(meta_model, meta_S, meta_Q, kink_tol=1e9, return_info=True, **kw)
    assert info.kink_retries == 3 * 3 * 3  # steps x tasks x retries


def test_shape_only_fob_maml_takes_the_costliest_branches_and_skips_value_checks():
    x = torch.empty(2, 4, device="meta")
    lin = lambda P: 2 * P  # noqa: E731
    _, info = fob_maml(x, lin, lin, alpha=0.1, delta=1e-3, fixed_point_iters="solve", max_fixed_point_iters=7,
                       batched=True, return_info=True)
    assert info.fixed_point_iters == [7, 7]  # both stencil points, no early stop: the tolerance needs values
    diverging = lambda P: 1e3 * P  # noqa: E731
    kw = dict(alpha=0.5, delta=1.0, fixed_point_iters=3, batched=True)
    with pytest.raises(FixedPointError):
        fob_maml(torch.ones(2, 4), diverging, diverging, **kw)
    out = fob_maml(x, diverging, diverging, **kw)  # the divergence test needs values
    assert out.device.type == "meta" and out.shape == x.shape
    with pytest.raises(ValueError, match="shape-only .* batched=True"):
        fob_maml(torch.empty(4, device="meta"), lin, lin, alpha=0.1, delta=1e-3)
