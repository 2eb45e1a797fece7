"""
Predict peak memory before you rent a card
==========================================

:func:`fobtheory.memory.peak_bytes` with ``device="meta"`` runs one meta-gradient on
shape-only tensors: no arithmetic, so a configuration far larger than this machine runs in
seconds, and the reading equals the CPU meter's byte for byte wherever the program does not
branch on values. On CUDA, add the allocator's margin over the meter (measured by the
toolkit at 2-13% for MAML's double backward).

Here: the peak of one meta-gradient against the number of inner steps K for a CNN of your
configuration, for second-order MAML (unrolled, and exact by Hessian-vector products with
recomputed iterates), FO-MAML and FO-B-MAML with stored iterates and lean (iterates
recomputed, one stencil point at a time).
"""
import matplotlib.pyplot as plt
import torch

from fobtheory.memory import peak_bytes
from fobtheory.nn import CNN1D

width, depth, meta_batch, ways, shots, queries, length = 512, 6, 64, 5, 5, 15, 72
model = CNN1D(width=width, depth=depth, activation="relu", length=length)
supports = (torch.empty(meta_batch, ways * shots, 1, length), torch.zeros(meta_batch, ways * shots, dtype=torch.long))
queries = (torch.empty(meta_batch, ways * queries, 1, length), torch.zeros(meta_batch, ways * queries, dtype=torch.long))
variants = {"MAML": dict(method="maml"), "HVP-MAML, lean": dict(method="maml_hvp", store_iterates=False),
            "FO-MAML": dict(method="fo_maml"),
            "FO-B symmetric": dict(method="fob_symmetric"),
            "FO-B symmetric, lean": dict(method="fob_symmetric", store_iterates=False, stack_stencil=False)}
Ks = [1, 3, 6]
GB = 1e9
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for name, options in variants.items():
    peaks = [peak_bytes(model, supports, queries, alpha=0.4, inner_steps=K, device="meta", **options) / GB for K in Ks]
    ax.plot(Ks, peaks, "-o", label=name)
    print(f"{name:>21}: " + ", ".join(f"K={K}: {p:.1f} GB" for K, p in zip(Ks, peaks)))
ax.axhline(16, color="k", ls=":", label="a 16 GB card")
ax.set_xticks(Ks)  # the measured K only
ax.set_xlabel("inner steps K")
ax.set_ylabel("peak memory (GB, meter)")
ax.legend(fontsize=8)
fig.tight_layout()
