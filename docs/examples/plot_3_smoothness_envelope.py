"""
The (L0, L1) envelope of the MAML objective
===========================================

The MAML objective is not L-smooth in general: its Hessian can grow with its gradient,
``|hess Phi| <= L0 + L1 |grad Phi|``. On the 1-D task ``f(x) = -cos x``,
``F(y) = y^2 / 2`` (:class:`fobtheory.problems.CosineTask`) both grow linearly in ``|x|``.
:mod:`fobtheory.smoothness` measures both norms from the closed forms at points on rays of
growing radius, fits the least envelope by linear programming, and gives theory's
constants. A quadratic family, for contrast, is L-smooth: its fitted L1 is zero.
"""
import matplotlib.pyplot as plt
import numpy as np

from fobtheory.problems import CosineTask, quadratic_tasks
from fobtheory.smoothness import fit_envelope, ray_points, task_norms, theory_constants

radii = np.logspace(-1, 3, 60)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
for ax, (name, task) in zip(axes, (("cosine", CosineTask(alpha=0.5)), ("quadratic", quadratic_tasks(1, 4, seed=0)[0]))):
    points, _ = ray_points(task.dim, radii, n_rays=2, seed=0)
    g, h = task_norms(task, points)
    fit = fit_envelope(g, h)
    L0, L1 = theory_constants(task)
    print(f"{name:>9}: fitted L0 = {fit.L0:.3f}, L1 = {fit.L1:.3f}; theory L0 = {L0:.3f}, L1 = {L1:.3f}")
    grid = np.geomspace(g[g > 0].min(), g.max(), 100)  # log-spaced: the flat L0 part shows on log axes
    ax.loglog(g, h, ".", ms=3, label="measured points", zorder=3)  # above the lines they touch
    ax.loglog(grid, fit.L0 + fit.L1 * grid, label="fitted envelope L0 + L1 |grad Phi|")
    ax.loglog(grid, L0 + L1 * grid, "--", label="theory's constants")
    ax.set(title=name, xlabel="|grad Phi|", ylabel="|hess Phi|")
axes[0].legend(fontsize=8)
fig.tight_layout()
