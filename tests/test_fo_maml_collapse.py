"""The FO-MAML collapse probe against independent computations."""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from fobtheory.experiments.fo_maml_collapse import chosen, meta_loss, probe
from fobtheory.nn import CNN1D

from test_patterns import batch_of_episodes


def test_meta_loss_is_the_query_loss_after_adaptation_and_the_probe_compares_the_two_gradients():
    torch.manual_seed(0)
    model = CNN1D(width=6, activation="gelu").double()
    supports, queries = batch_of_episodes(n_tasks=3)
    alpha, K = 0.2, 2
    for b in range(3):  # the adapted query loss, written out with torch.autograd
        params = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters()}
        for _ in range(K):
            g = torch.autograd.grad(F.cross_entropy(functional_call(model, params, (supports[0][b],)), supports[1][b]),
                                    list(params.values()))
            params = {n: (w - alpha * gi).detach().requires_grad_(True) for (n, w), gi in zip(params.items(), g)}
        expected = F.cross_entropy(functional_call(model, params, (queries[0][b],)), queries[1][b])
        assert torch.allclose(meta_loss(model, supports, queries, alpha=alpha, inner_steps=K)[b], expected, rtol=1e-12)
    tiny = probe(model, (supports, queries), 1e-6, 1)  # alpha -> 0: FO-MAML's gradient is MAML's
    assert abs(tiny["cosine"] - 1) < 1e-9 and abs(tiny["norm_ratio"] - 1) < 1e-5
    assert probe(model, (supports, queries), alpha, K)["cosine"] < 1 - 1e-6


def test_the_chosen_setting_is_read_from_the_committed_selection():
    alpha, K = chosen(Path(__file__).resolve().parents[1] / "figures" / "mnist1d_select.json", "relu/fo_maml")
    assert alpha > 0 and K >= 1
