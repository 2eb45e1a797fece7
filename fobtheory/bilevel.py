"""A bilevel family with closed forms, and first-order hypergradients from perturbed solutions.

**Problem.** ``min_x Phi(x) = F(x, w*(x))`` with ``w*(x) = argmin_w g(x, w)``. The family is
ridge regression with a learned per-feature regulariser (hyperparameter optimisation):

    g(x, w) = |A w - b|^2 / (2n) + sum_i exp(x_i) w_i^2 / 2         (training loss, lower level)
    F(x, w) = |A_v w - b_v|^2 / (2m) + mu |x|^2 / 2                 (validation loss, upper level)

``g`` is strongly convex in w with Hessian ``H(x) = A^T A / n + diag(exp x)``, and the exact
hypergradient is one linear solve:

    grad Phi(x) = mu x - (exp(x) * w*) * H^-1 grad_w F(x, w*).

**Perturbed problem.** ``w_t = argmin_w g(x, w) + t F(x, w)``, i.e. ``(H + t B) w_t = a + t c``
with ``B = A_v^T A_v / m``, ``a = A^T b / n``, ``c = A_v^T b_v / m``. By the envelope theorem
``G(t) = grad_x [g + t F](x, w_t) = exp(x) * w_t^2 / 2 + t mu x`` is the x-gradient of the
perturbed value function ``V(t, x) = min_w g + t F``, and ``d/dt V(t, x) at 0 = Phi(x)``, so
``G'(0) = grad Phi(x)``. ``w_t`` is rational in t, with poles at ``t = -1 / lambda`` for the
eigenvalues of ``H^-1 B``: its Taylor series converges for ``|t| < radius = 1 / lambda_max``,
and ``g + t F`` is strongly convex for ``t > -radius``.

**FO-B's estimator** (:func:`fob_hypergrad`) differences G over a stencil (offsets ``s_j``,
weights ``c_j``, :mod:`fobtheory.stencils`): ``(1/delta) sum_j c_j G(s_j delta)``, bias
``M_(p+1) g_(p+1) delta^p + ...`` with ``M_m = sum_j c_j s_j^m`` and ``g_k`` the Taylor
coefficients of G (:meth:`RidgeTasks.perturbation_series`). On MAML (``g = h*(w) - <x, w>``)
``G = -y`` and this is FO-B-MAML.

**F2SA-p's estimator** (:func:`f2sa_p`) in the penalty form with ``lambda = 1/delta``: F2SA's
penalty gradient ``grad_x L_lam(x, y_lam, z) = grad_x F(x, y_lam) + lam (grad_x g(x, y_lam) -
grad_x g(x, z))``, with ``y_lam`` the stationary point of ``F + lam g`` and ``z = w*``, is
combined over the penalties ``lam_j = lambda / s_j`` (``s_j != 0``) with weights ``c_j s_j``.
Since ``sum_j c_j = 0`` and ``y_(lambda/s) = w_(s/lambda)``, the combination equals FO-B's
estimator at ``delta = 1/lambda`` in exact arithmetic; p = 1 is F2SA itself.

Costs: both need ``p`` perturbed lower-level solves plus the unperturbed one (``z``) when the
stencil contains 0, and one x-gradient per solution.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .checks import integer, positive
from .stencils import Stencil, stencil_for


def _floats(name: str, values) -> np.ndarray:
    t = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if t.ndim != 1 or not np.isfinite(t).all():
        raise ValueError(f"{name} must be a finite number or 1-D list of numbers, got {values!r}")
    return t


@dataclass(frozen=True)
class RidgeTasks:
    """B ridge-regression hyperparameter tasks (arrays with a leading task axis; see the module
    docstring): training data ``A`` (B, n, d), ``b`` (B, n); validation data ``A_val`` (B, m, d),
    ``b_val`` (B, m); ``mu`` >= 0 weights ``|x|^2 / 2`` in the upper level."""

    A: np.ndarray
    b: np.ndarray
    A_val: np.ndarray
    b_val: np.ndarray
    mu: float = 0.0

    def __post_init__(self):
        if self.A.ndim != 3 or self.A_val.ndim != 3 or self.A.shape[::2] != self.A_val.shape[::2]:
            raise ValueError(f"A and A_val must be (B, n, d) and (B, m, d) arrays, got {self.A.shape} and "
                             f"{self.A_val.shape}")
        if self.b.shape != self.A.shape[:2] or self.b_val.shape != self.A_val.shape[:2]:
            raise ValueError(f"b and b_val must have shapes {self.A.shape[:2]} and {self.A_val.shape[:2]}, got "
                             f"{self.b.shape} and {self.b_val.shape}")
        if not (np.isfinite(self.mu) and self.mu >= 0):
            raise ValueError(f"mu must be a finite number >= 0, got {self.mu!r}")

    @property
    def n_tasks(self) -> int:
        return self.A.shape[0]

    @property
    def dim(self) -> int:
        return self.A.shape[2]

    # the quadratic data: H(x) = S + diag(exp x), B = S_val, a, c (batched over tasks)
    @property
    def _S(self):
        return np.einsum("bni,bnj->bij", self.A, self.A) / self.A.shape[1]

    @property
    def _B(self):
        return np.einsum("bni,bnj->bij", self.A_val, self.A_val) / self.A_val.shape[1]

    @property
    def _a(self):
        return np.einsum("bni,bn->bi", self.A, self.b) / self.A.shape[1]

    @property
    def _c(self):
        return np.einsum("bni,bn->bi", self.A_val, self.b_val) / self.A_val.shape[1]

    def _x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_tasks, self.dim) or not np.isfinite(x).all():
            raise ValueError(f"x must be a finite ({self.n_tasks}, {self.dim}) array (one row per task), got "
                             f"shape {x.shape}")
        return x

    def hessian(self, x) -> np.ndarray:
        """``H(x) = hess_w g`` per task, (B, d, d)."""
        return self._S + np.einsum("bi,ij->bij", np.exp(self._x(x)), np.eye(self.dim))

    def perturbed_hessian(self, x, t) -> np.ndarray:
        """``hess_w (g + t F) = H(x) + t B`` for each perturbation in ``t``, (B, len(t), d, d)."""
        return self.hessian(x)[:, None] + _floats("t", t)[None, :, None, None] * self._B[:, None]

    # --- losses and gradients (w has shape (B, ..., d): any number of solutions per task)
    def lower_loss(self, x, w) -> np.ndarray:
        r = np.einsum("bni,b...i->b...n", self.A, w) - self.b.reshape(self.n_tasks, *[1] * (w.ndim - 2), -1)
        return (r**2).mean(-1) / 2 + np.einsum("bi,b...i->b...", np.exp(self._x(x)), w**2) / 2

    def upper_loss(self, x, w) -> np.ndarray:
        r = np.einsum("bni,b...i->b...n", self.A_val, w) - self.b_val.reshape(self.n_tasks, *[1] * (w.ndim - 2), -1)
        x = self._x(x)
        return (r**2).mean(-1) / 2 + (self.mu * (x**2).sum(-1) / 2).reshape(-1, *[1] * (w.ndim - 2))

    def lower_grad_x(self, x, w) -> np.ndarray:
        """``grad_x g(x, w) = exp(x) * w^2 / 2``."""
        e = np.exp(self._x(x)).reshape(self.n_tasks, *[1] * (w.ndim - 2), self.dim)
        return e * w**2 / 2

    def upper_grad_x(self, x, w) -> np.ndarray:
        """``grad_x F(x, w) = mu x`` (F depends on x only through its regulariser)."""
        return np.broadcast_to((self.mu * self._x(x)).reshape(self.n_tasks, *[1] * (w.ndim - 2), self.dim), w.shape)

    def upper_grad_w(self, x, w) -> np.ndarray:
        return np.einsum("bij,b...j->b...i", self._B, w) - self._c.reshape(self.n_tasks, *[1] * (w.ndim - 2), -1)

    # --- closed forms
    def lower_solution(self, x, t=0.0) -> np.ndarray:
        """``w_t = argmin g + t F`` for each perturbation in ``t``: (B, len(t), d), by a linear solve."""
        t = _floats("t", t)
        rhs = self._a[:, None] + t[None, :, None] * self._c[:, None]
        return np.linalg.solve(self.perturbed_hessian(x, t), rhs[..., None])[..., 0]

    def penalty_solution(self, x, lam) -> np.ndarray:
        """Stationary point of F2SA's ``F + lam g`` for each penalty in ``lam`` (nonzero):
        ``(lam H + B) y = lam a + c``, (B, len(lam), d)."""
        lam = _floats("lam", lam)
        if (lam == 0).any():
            raise ValueError(f"lam must be nonzero penalties, got {lam.tolist()}")
        M = lam[None, :, None, None] * self.hessian(x)[:, None] + self._B[:, None]
        rhs = lam[None, :, None] * self._a[:, None] + self._c[:, None]
        return np.linalg.solve(M, rhs[..., None])[..., 0]

    def value(self, x) -> np.ndarray:
        """``Phi(x) = F(x, w*(x))`` per task."""
        return self.upper_loss(x, self.lower_solution(x, 0.0))[:, 0]

    def hypergrad(self, x) -> np.ndarray:
        """Exact ``grad Phi(x) = mu x - (exp(x) w*) H^-1 grad_w F(x, w*)``, (B, d)."""
        x = self._x(x)
        w = self.lower_solution(x, 0.0)[:, 0]
        q = np.linalg.solve(self.hessian(x), self.upper_grad_w(x, w[:, None])[:, 0][..., None])[..., 0]
        return self.mu * x - np.exp(x) * w * q

    def radius(self, x) -> np.ndarray:
        """``1 / lambda_max(H^-1 B)`` per task: the series of ``w_t`` converges for ``|t|`` below
        it, and ``g + t F`` is strongly convex for ``t`` above its negative."""
        H = self.hessian(x)
        L = np.linalg.cholesky(H)
        Linv = np.linalg.inv(L)
        top = np.linalg.eigvalsh(Linv @ self._B @ np.swapaxes(Linv, 1, 2))[:, -1]
        return np.where(top > 0, 1 / np.maximum(top, 1e-300), np.inf)

    def perturbation_series(self, x, order: int) -> np.ndarray:
        """Taylor coefficients ``g_0..g_order`` of ``G(t) = sum_k g_k t^k``, (order + 1, B, d):
        ``H w_0 = a``, ``H w_1 = c - B w_0``, ``H w_k = -B w_(k-1)`` (k >= 2), and
        ``g_k = exp(x)/2 sum_(i+j=k) w_i w_j + [k = 1] mu x``."""
        x = self._x(x)
        order = integer("order", order, 0)
        H = self.hessian(x)
        ws = [np.linalg.solve(H, self._a[..., None])[..., 0]]
        for k in range(1, order + 1):
            rhs = -np.einsum("bij,bj->bi", self._B, ws[-1]) + (self._c if k == 1 else 0)
            ws.append(np.linalg.solve(H, rhs[..., None])[..., 0])
        e = np.exp(x) / 2
        gs = [e * sum(ws[i] * ws[k - i] for i in range(k + 1)) for k in range(order + 1)]
        if order >= 1:
            gs[1] = gs[1] + self.mu * x
        return np.stack(gs)

    # --- inexact lower-level solves
    def descent_iterates(self, x, t, steps: Sequence[int], start) -> dict[int, np.ndarray]:
        """Gradient descent on ``g + t F`` (step ``1 / L_t``, L_t the largest eigenvalue of
        ``H + t B``) from ``start`` (B, len(t), d): the iterates after each count in ``steps``."""
        t = _floats("t", t)
        steps = sorted({integer("steps", s, 0) for s in steps})
        M = self.perturbed_hessian(x, t)
        rhs = self._a[:, None] + t[None, :, None] * self._c[:, None]
        eta = 1 / np.linalg.eigvalsh(M)[..., -1:]
        w = np.array(start, dtype=np.float64)
        if w.shape != rhs.shape:
            raise ValueError(f"start must have shape {rhs.shape}, got {w.shape}")
        out, done = {}, 0
        for s in steps:
            for _ in range(s - done):
                w = w - eta * (np.einsum("bmij,bmj->bmi", M, w) - rhs)
            done = s
            out[s] = w.copy()
        return out


def ridge_tasks(n_tasks: int, dim: int, *, n_train: int | None = None, n_val: int | None = None,
                mu: float = 0.1, noise: float = 0.5, seed: int = 0) -> tuple[RidgeTasks, np.ndarray]:
    """Random tasks and a point ``x`` (log-regularisers near 0) per task: Gaussian features,
    a planted linear model per task, noisy targets; ``n_train`` and ``n_val`` default to 2 dim."""
    n_tasks, dim = integer("n_tasks", n_tasks), integer("dim", dim)
    n, m = integer("n_train", n_train or 2 * dim), integer("n_val", n_val or 2 * dim)
    rng = np.random.default_rng(seed)
    w_true = rng.standard_normal((n_tasks, dim)) / np.sqrt(dim)
    A, A_val = rng.standard_normal((n_tasks, n, dim)), rng.standard_normal((n_tasks, m, dim))
    b = np.einsum("bni,bi->bn", A, w_true) + noise * rng.standard_normal((n_tasks, n))
    b_val = np.einsum("bni,bi->bn", A_val, w_true) + noise * rng.standard_normal((n_tasks, m))
    x = 0.5 * rng.standard_normal((n_tasks, dim))
    return RidgeTasks(A, b, A_val, b_val, float(mu)), x


# ---------------------------------------------------------------------------------------------
# estimators

Solver = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, t) -> w_t, shape (B, len(t), d)


def fob_hypergrad(problem: RidgeTasks, x, *, delta: float, scheme="symmetric", solve: Solver | None = None):
    """FO-B: ``(1/delta) sum_j c_j G(s_j delta)``, ``G(t) = grad_x g(x, w_t) + t grad_x F(x, w_t)``,
    with ``w_t`` from ``solve(x, t)`` (default: the exact linear solve)."""
    delta = positive("delta", delta)
    stencil = stencil_for(scheme)
    t = delta * np.array(stencil.offsets, dtype=np.float64)
    w = (solve or problem.lower_solution)(x, t)
    G = problem.lower_grad_x(x, w) + t[None, :, None] * problem.upper_grad_x(x, w)
    return np.einsum("j,bjd->bd", np.array(stencil.float_weights), G) / delta


def f2sa_penalty_grad(problem: RidgeTasks, x, lam, y, z) -> np.ndarray:
    """F2SA's ``grad_x L_lam(x, y, z) = grad_x F(x, y) + lam (grad_x g(x, y) - grad_x g(x, z))``
    for each penalty (y: (B, len(lam), d), z: (B, d))."""
    lam = _floats("lam", lam)
    return (problem.upper_grad_x(x, y)
            + lam[None, :, None] * (problem.lower_grad_x(x, y) - problem.lower_grad_x(x, z[:, None])))


def f2sa_p(problem: RidgeTasks, x, *, lam: float, scheme="symmetric") -> np.ndarray:
    """F2SA-p in the penalty form: ``sum_(s_j != 0) c_j s_j grad_x L_(lam/s_j)(x, y_(lam/s_j), z)``
    with ``y_l`` the stationary point of ``F + l g`` and ``z = argmin g`` (p = 1: F2SA)."""
    lam = positive("lam", lam)
    stencil: Stencil = stencil_for(scheme)
    s = np.array(stencil.perturbed_offsets, dtype=np.float64)
    c = np.array([float(w) for o, w in zip(stencil.offsets, stencil.weights) if o != 0])
    penalties = lam / s
    z = problem.lower_solution(x, 0.0)[:, 0]
    grads = f2sa_penalty_grad(problem, x, penalties, problem.penalty_solution(x, penalties), z)
    return np.einsum("j,bjd->bd", c * s, grads)
