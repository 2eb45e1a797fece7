"""
A meta-gradient for your own model
==================================

:func:`fobtheory.nn.meta_gradient` takes any ``torch.nn.Module`` and one task's support
and query sets as ``(x, y)`` pairs, and returns ``{parameter name: meta-gradient}``, like
``dict(model.named_parameters())``. Second-order MAML (``maml``) differentiates through
the inner loop; FO-MAML, Reptile and FO-B-MAML use gradients only.
:func:`fobtheory.nn.meta_gradient_batch` does a meta-batch of tasks at once (``vmap``).

Here: a small regression network of your own, with a smooth activation, in float64.
"""
import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from fobtheory.nn import meta_gradient, meta_gradient_batch

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1)).double()


def sine_task(n, amplitude, phase):
    x = torch.rand(n, 1, dtype=torch.float64) * 10 - 5
    return x, amplitude * torch.sin(x + phase)


support, query = sine_task(10, 2.0, 0.3), sine_task(20, 2.0, 0.3)
run = dict(alpha=0.01, inner_steps=3, loss=F.mse_loss)
grads = {m: meta_gradient(model, support, query, method=m, delta=1e-4, **run)
         for m in ("maml", "fo_maml", "reptile", "fob_forward", "fob_symmetric")}


def flat(g):
    return torch.cat([t.flatten() for t in g.values()])


reference = flat(grads["maml"])
errors = {m: float((flat(g) - reference).norm() / reference.norm()) for m, g in grads.items() if m != "maml"}
for m, e in errors.items():
    print(f"{m:>13}: relative error against MAML {e:.1e}")

fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.barh(list(errors), list(errors.values()))  # horizontal: the method names never collide
ax.set_xscale("log")
ax.set_xlabel("relative error against MAML")
fig.tight_layout()

# %%
# A meta-batch: stack the tasks along a first dimension. The answer has one row per task;
# its mean over tasks is the meta-gradient of the meta-batch, ready for any optimizer.
tasks = [sine_task(30, a, p) for a, p in ((1.0, 0.0), (2.0, 1.0), (0.5, 2.0), (1.5, 3.0))]
supports = (torch.stack([x[:10] for x, _ in tasks]), torch.stack([y[:10] for _, y in tasks]))
queries = (torch.stack([x[10:] for x, _ in tasks]), torch.stack([y[10:] for _, y in tasks]))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
batch = meta_gradient_batch(model, supports, queries, method="fob_symmetric", delta=1e-4, **run)
for name, p in model.named_parameters():
    p.grad = batch[name].mean(0)
optimizer.step()
print("per-task rows:", {name: tuple(g.shape) for name, g in batch.items()})
