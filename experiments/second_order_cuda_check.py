"""On a CUDA card: kernels without second derivatives, where only first order is right.

    python -m fobtheory.experiments.second_order_cuda_check [--out figures/cuda]

Two networks whose fast CUDA kernels have no double backward:
a self-attention block through ``F.scaled_dot_product_attention`` with the flash backend,
and a GRU with cuDNN. Each method's meta-gradient on the fast kernel is compared with MAML on
the same network and weights with the reference kernel (the math backend of attention,
cuDNN off for the GRU), float32: the second-order methods fail (torch raises) where the
first-order methods run, and FO-B symmetric lands within its float32 error of the reference.
Writes ``second_order_cuda_check.json`` (records: network, method, error or the error
message). A few minutes on one card; refuses to run without one.
"""
from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fobtheory.nn import ALL_METHODS, PLAIN_DIFFERENCES, flatten, meta_gradient
from fobtheory.results import claim, make_results, verdict, write_json_atomic

NAME = "second_order_cuda_check"


class Attention(nn.Module):
    """One self-attention block over a sequence of ``length`` scalars, then a linear head."""

    def __init__(self, dim=32, heads=2, length=40, classes=5):
        super().__init__()
        self.embed, self.qkv = nn.Linear(1, dim), nn.Linear(dim, 3 * dim)
        self.heads, self.head = heads, nn.Linear(dim * length, classes)

    def forward(self, x):  # x: (n, 1, length)
        h = self.embed(x.transpose(1, 2))
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.qkv(h).chunk(3, -1))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.head((h + a).flatten(1))


class GRUNet(nn.Module):
    def __init__(self, hidden=32, classes=5):
        super().__init__()
        self.gru, self.head = nn.GRU(1, hidden, batch_first=True), nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(self.gru(x.transpose(1, 2))[0][:, -1])


def _kernels(network: str, fast: bool):
    """The context that selects the fast kernel (or the reference) for ``network``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if network == "attention":
        return sdpa_kernel(SDPBackend.FLASH_ATTENTION if fast else SDPBackend.MATH)
    return nullcontext() if fast else torch.backends.cudnn.flags(enabled=False)


def _meta_gradients(model, supports, queries, method: str, **kw) -> torch.Tensor:
    """(tasks, P) float32: each task's meta-gradient, one task at a time (cuDNN's RNN kernels
    refuse ``vmap``'s batched tensors, so no method may vectorise over tasks here)."""
    return torch.stack([flatten(meta_gradient(model, (xs, ys), (xq, yq), method=method, **kw))
                        for xs, ys, xq, yq in zip(*supports, *queries)]).float()


def _error(estimate: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest relative error over tasks."""
    return float(((estimate - ref).norm(dim=1) / ref.norm(dim=1)).max())


def run(device="cuda", tasks=4, inner_steps=2, alpha=0.1, delta=1e-2, seed=0) -> dict:
    """Per network: MAML on the reference kernel is the truth; each method runs on the fast
    kernel (an error or the refusal), and FO-B symmetric also on the reference kernel: its own
    error there (float32 or half roundoff plus O(delta^2)) is the floor FO-B on the fast kernel is held to."""
    records, floors = [], {}
    g = torch.Generator().manual_seed(seed)
    pair = lambda n: (torch.randn(tasks, n, 1, 40, generator=g).to(device),  # noqa: E731
                      (torch.arange(n) % 5).repeat(tasks, 1).to(device))
    supports, queries = pair(25), pair(75)
    for network, make in (("attention", Attention), ("gru", GRUNet)):
        torch.manual_seed(seed)
        model = make().to(device)
        if network == "attention":  # flash attention runs in half precision
            model, supports_, queries_ = model.half(), (supports[0].half(), supports[1]), (queries[0].half(), queries[1])
        else:
            supports_, queries_ = supports, queries
        kw = dict(alpha=alpha, inner_steps=inner_steps, delta=delta, **PLAIN_DIFFERENCES)
        with _kernels(network, fast=False):
            ref = _meta_gradients(model, supports_, queries_, "maml", **kw)
            floors[network] = _error(_meta_gradients(model, supports_, queries_, "fob_symmetric", **kw), ref)
        for method in ALL_METHODS:
            try:
                with _kernels(network, fast=True):
                    error = _error(_meta_gradients(model, supports_, queries_, method, **kw), ref)
                records.append(dict(network=network, method=method, error=error, failure=""))
            except (RuntimeError, ValueError, NotImplementedError) as e:
                records.append(dict(network=network, method=method, error=None, failure=str(e).splitlines()[0][:300]))
    by = {(r["network"], r["method"]): r for r in records}
    claims = []
    for network in ("attention", "gru"):
        second = [by[(network, m)] for m in ("maml", "maml_hvp")]
        fob, floor = by[(network, "fob_symmetric")], floors[network]
        claims.append(claim(
            f"{network}_only_first_order_runs",
            f"On the fast CUDA kernel ({network}), second-order MAML cannot run and FO-B matches MAML on the "
            "reference kernel as closely as FO-B on the reference kernel does",
            "maml and maml_hvp fail (raise); FO-B symmetric's error on the fast kernel <= 2x its error on the "
            "reference kernel (its own roundoff and truncation floor, same precision)",
            f"maml: {second[0]['failure'] or second[0]['error']}; maml_hvp: {second[1]['failure'] or second[1]['error']}; "
            f"FO-B symmetric {fob['error']} on the fast kernel, {floor:.3g} on the reference kernel",
            verdict(all(r["error"] is None for r in second) and fob["error"] is not None and fob["error"] <= 2 * floor,
                    fob["error"] is None or fob["error"] > 10 * floor)))
    cfg = dict(device=device, tasks=tasks, inner_steps=inner_steps, alpha=alpha, delta=delta, seed=seed)
    return make_results(NAME, cfg, records, {"devices": torch.cuda.get_device_name(0), "fob_floor": floors},
                        claims, device=device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="figures/cuda")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device: this check measures CUDA kernels (flash attention, cuDNN GRU)")
        return 2
    results = run()
    path = write_json_atomic(Path(args.out) / f"{NAME}.json", results)
    for r in results["records"]:
        print(f"{r['network']:>9} {r['method']:>13}: {r['failure'] or r['error']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
