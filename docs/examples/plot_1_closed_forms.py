"""
Meta-problems with closed forms
===============================

:mod:`fobtheory.problems` builds small meta-learning problems whose MAML objective
``Phi(x) = mean_i F_i(phi_i^K(x))`` has an exact gradient and Hessian. They are the ground
truth every estimator in this toolkit is measured against.

Here: a family of quadratic tasks, the closed-form meta-gradient checked against a central
difference of the meta-loss itself, and the objective along a line with its tangent.
"""
import matplotlib.pyplot as plt
import numpy as np

from fobtheory.problems import quadratic_tasks

problem = quadratic_tasks(n_tasks=5, dim=4, seed=0)   # 5 tasks, alpha * L = 0.5 by default
task = problem[0]
x = np.random.default_rng(0).standard_normal(task.dim)
K = 2                                                  # inner steps

exact = problem.meta_grad(x, K)                        # task mean, closed form
h = 1e-5
numeric = np.array([(problem.meta_loss(x + h * e, K) - problem.meta_loss(x - h * e, K)) / (2 * h)
                     for e in np.eye(task.dim)])
print(f"alpha = {task.alpha:.3f}, |closed form - central difference of Phi| / |grad Phi| = "
      f"{np.linalg.norm(exact - numeric) / np.linalg.norm(exact):.1e}")

# %%
# The objective along the direction of steepest descent, and its tangent at ``x``: the
# slope of the tangent is ``-|grad Phi(x)|``.
u = -exact / np.linalg.norm(exact)
t = np.linspace(-2, 2, 81)
values = [problem.meta_loss(x + s * u, K) for s in t]
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(t, values, label="Phi(x + t u)")
ax.plot(t, problem.meta_loss(x, K) - np.linalg.norm(exact) * t, "--", label="tangent from grad Phi")
ax.set_xlabel("t")
ax.set_ylim(min(values) - 0.5, max(values) + 0.5)
ax.legend()
fig.tight_layout()
