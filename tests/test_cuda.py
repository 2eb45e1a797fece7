"""The same numbers on CUDA as on the CPU. Skipped where torch sees no CUDA device."""
import pytest
import torch

from fobtheory.estimators import fob_maml, fo_maml
from fobtheory.experiments import mnist1d as exp
from fobtheory.experiments import mnist1d_fidelity as fid
from fobtheory.nn import CNN1D, METHODS, meta_gradient

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _oracles(device, d=7, seed=0):
    """grad f(x) = A x + 0.1 tanh(x) - b (non-quadratic, so the differences truncate), grad F(y) = C y - c."""
    g = torch.Generator().manual_seed(seed)
    M, N = torch.randn(d, d, generator=g, dtype=torch.float64), torch.randn(d, d, generator=g, dtype=torch.float64)
    A, C = (M @ M.T / d + torch.eye(d, dtype=torch.float64)).to(device), (N @ N.T / d).to(device)
    b, c = torch.randn(d, generator=g, dtype=torch.float64).to(device), torch.randn(d, generator=g, dtype=torch.float64).to(device)
    return (lambda x: A @ x + 0.1 * torch.tanh(x) - b), (lambda y: C @ y - c), torch.randn(d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("scheme", ["forward", "symmetric", 4])
def test_fob_maml_on_cuda_tensors_matches_the_cpu(scheme):
    inner_cpu, outer_cpu, x = _oracles("cpu")
    inner_gpu, outer_gpu, _ = _oracles("cuda")
    kw = dict(alpha=0.1, delta=1e-4, scheme=scheme, inner_steps=3, fixed_point_iters="solve")
    cpu = fob_maml(x, inner_cpu, outer_cpu, **kw)
    gpu = fob_maml(x.cuda(), inner_gpu, outer_gpu, **kw)
    assert gpu.is_cuda and gpu.dtype == torch.float64
    assert float((gpu.cpu() - cpu).norm() / cpu.norm()) < 1e-10
    base = fo_maml(x.cuda(), inner_gpu, outer_gpu, alpha=0.1, inner_steps=3)
    assert base.is_cuda


@pytest.mark.parametrize("method", METHODS)
def test_network_meta_gradients_on_cuda_match_the_cpu(method):
    torch.manual_seed(0)
    model = CNN1D(width=8, depth=3, activation="gelu").double()
    g = torch.Generator().manual_seed(1)
    support = (torch.randn(10, 1, 40, generator=g, dtype=torch.float64), torch.arange(10) % 5)
    query = (torch.randn(15, 1, 40, generator=g, dtype=torch.float64), torch.arange(15) % 5)
    kw = dict(method=method, alpha=0.3, inner_steps=2, delta=1e-4)
    cpu = meta_gradient(model, support, query, **kw)
    on_gpu = lambda pair: tuple(t.cuda() for t in pair)  # noqa: E731
    gpu = meta_gradient(model.cuda(), on_gpu(support), on_gpu(query), **kw)
    for name, grad in cpu.items():
        assert gpu[name].is_cuda
        assert float((gpu[name].cpu() - grad).norm()) <= 1e-9 * float(grad.norm()) + 1e-14


def test_the_mnist1d_experiments_run_on_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tiny = dict(num_samples=600, queries=3, meta_steps=4, eval_every=2, checkpoint_every=2, eval_episodes=10,
                curve_episodes=5, checkpoint_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "committed"),
                meta_batch=2)
    cfg = dict(exp.config(quick=True, device="cuda"), **tiny, timing_rounds=1, methods=["maml", "fob_symmetric"],
               activations=["relu"], frozen_activations=["relu"], shots=[5])
    results = exp.run(cfg)
    assert results["environment"]["device"] == "cuda"
    assert {r["device"] for r in results["records"] if r["kind"] == "final"} == {"cuda"}  # each run marked
    fcfg = fid.config(quick=True, device="cuda")
    fcfg["training"].update(tiny)
    fcfg.update(activations=["relu"], steps=[0, 4], episodes=2, deltas=[1e-5, 1e-2], dtypes=["float64"])
    frozen = [r["error"] for r in fid.run(fcfg)["records"] if r["kind"] == "fidelity" and r["freeze_pattern"]
              and r["method"] == "fob_symmetric" and r["delta"] == 1e-5]
    assert max(frozen) < 1e-8
