"""
Bias of each estimator against delta
====================================

FO-B-MAML differentiates the solution of a perturbed problem by finite differences of
gradients. The forward scheme has a bias O(delta), the symmetric one O(delta^2), an order-4
stencil O(delta^4); below some delta, float64 roundoff takes over. The complex step has no
subtractive cancellation, so it has no such floor. FO-MAML has a bias that no delta removes.
"""
import matplotlib.pyplot as plt
import numpy as np

from fobtheory.estimators import fo_maml, fob_maml
from fobtheory.problems import logistic_tasks
from fobtheory.rates import fit_rate, relative_error

task = logistic_tasks(n_tasks=1, dim=10, seed=0)[0]    # L2-regularised logistic regression
x = np.random.default_rng(1).standard_normal(task.dim)
exact = task.meta_grad(x, inner_steps=1)
deltas = np.logspace(-9, 0, 28)
errors = {scheme: np.array([relative_error(fob_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha,
                                                    delta=d, scheme=scheme), exact) for d in deltas])
          for scheme in ("forward", "symmetric", 4, "complex")}
baseline = relative_error(fo_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha), exact)

labels = {"forward": "FO-B forward, O(delta)", "symmetric": "FO-B symmetric, O(delta^2)",
          4: "FO-B order-4 stencil, O(delta^4)", "complex": "FO-B complex step"}
fig, ax = plt.subplots(figsize=(7.5, 3.8))
for scheme, e in errors.items():
    ax.loglog(deltas, np.maximum(e, 1e-17), marker=".", label=labels[scheme])
ax.axhline(baseline, color="k", ls=":", label="FO-MAML (no delta)")
ax.set_ylim(top=10 * baseline)  # the FO-MAML line clear of the frame
ax.set_xlabel("delta")
ax.set_ylabel("relative error against grad Phi (floor 1e-17)")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
fig.tight_layout()

# %%
# :func:`fobtheory.rates.fit_rate` finds the truncation window (errors well above the
# roundoff estimate) and fits the slope there: it is the order of the scheme. For your own
# estimator, :func:`fobtheory.testing.assert_order` does the same inside a test.
for scheme in ("forward", "symmetric", 4):
    fit = fit_rate(deltas, errors[scheme])
    print(f"{scheme!s:>9}: slope {fit.slope:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}] over {fit.n_points} deltas")
print(f"  complex: best error {errors['complex'].min():.1e}; FO-MAML: {baseline:.3f} at every delta")
