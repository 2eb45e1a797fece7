"""Synthetic meta-learning problems with closed-form meta-gradients and meta-Hessians.

A task has an inner (support) loss ``f`` and an outer (query) loss ``F``. With inner step
``alpha`` and ``K`` inner steps, ``x_{k+1} = x_k - alpha grad f(x_k)`` and the MAML
objective is ``Phi(x) = F(x_K)``. Its exact derivatives:

    grad Phi(x) = (I - a H(x_0)) ... (I - a H(x_{K-1})) grad F(x_K),       H = hess f
    hess Phi  by the backward recursion  S_K = hess F(x_K),
              S_k = (I - a H(x_k)) S_{k+1} (I - a H(x_k)) - a D3f(x_k)[g_{k+1}],
    where g_{k+1} = grad of Phi with respect to x_{k+1} and D3f(x)[v] = d/dt hess f(x + t v).

Each task supplies its losses, gradients, Hessians and third-derivative contractions; the
meta-quantities above are computed once, in :class:`MetaTask`. The gradient oracles accept
numpy arrays and torch tensors, real or complex (they are holomorphic, so the complex step
applies); the closed forms work in numpy float64.

A :class:`MetaProblem` is a sequence of tasks whose meta-quantities are task means.
"""
from __future__ import annotations

import functools
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from . import arrays
from .checks import integer, positive
from .estimators import accepts_anchor

# ---------------------------------------------------------------------------------------------
# validation helpers


def check_alpha(alpha, L: float) -> float:
    """Validate the inner step: ``0 < alpha`` and ``alpha * L < 1`` (L = smoothness of f)."""
    alpha = positive("alpha", alpha)
    if alpha * L >= 1:
        raise ValueError(
            f"alpha*L must be < 1 so that the inner step is a diffeomorphism: "
            f"alpha={alpha:g}, L={L:g} gives alpha*L={alpha * L:.4g}; choose alpha < {1 / L:.6g}"
        )
    return alpha


def _as_point(x, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (dim,):
        raise ValueError(f"x must have shape ({dim},), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    return x


def _checks_point(oracle):
    """``oracle(self, x, ...)`` that first refuses a point (its first argument, numpy array,
    tensor or list) whose last axis is not ``self.dim`` long, naming the argument, the
    expected shape and the task."""
    name = list(inspect.signature(oracle).parameters)[1]

    @functools.wraps(oracle)
    def checked(self, x, *args, **kwargs):
        shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
        if shape[-1:] != (self.dim,):
            raise ValueError(f"{name} must have shape ({self.dim},) in {oracle.__name__} of {self!r}, "
                             f"got shape {shape}")
        return oracle(self, x, *args, **kwargs)
    return checked


# the methods of a task whose first argument is a point of R^dim (checked by _checks_point)
POINT_METHODS = ("inner_loss", "outer_loss", "inner_grad", "outer_grad", "inner_hess", "outer_hess", "inner_hvp",
                 "inner_third", "kink_distances", "next_to_kink")


def _symmetric(name: str, M, dim: int | None = None) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or (dim is not None and M.shape[0] != dim):
        want = f"({dim}, {dim})" if dim is not None else "square"
        raise ValueError(f"{name} must be a {want} matrix, got shape {M.shape}")
    if not np.allclose(M, M.T, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(M).max())):
        raise ValueError(f"{name} must be symmetric")
    return (M + M.T) / 2


# ---------------------------------------------------------------------------------------------
# the generic task


class MetaTask(ABC):
    """One task: inner loss f, outer loss F, inner step alpha; closed-form meta-derivatives.

    Subclasses set ``dim``, ``alpha``, the constants ``L`` (smoothness of f), ``rho``
    (Lipschitz constant of hess f), ``L_F`` (smoothness of F), and implement the oracles.
    """

    dim: int
    alpha: float
    L: float
    rho: float
    L_F: float
    origin: str | None = None  # the factory call that made it (its repr), None when built by hand

    def __init__(self):
        self._backend_constants: dict = {}

    def __init_subclass__(cls, **kwargs):
        """A point of the wrong dimension passed to an oracle is a ValueError naming it (:data:`POINT_METHODS`)."""
        super().__init_subclass__(**kwargs)
        for name in POINT_METHODS:
            if name in vars(cls):
                setattr(cls, name, _checks_point(vars(cls)[name]))

    def __repr__(self):
        """The factory call that made the task (enough to rebuild it: family, dimension, seed,
        every argument), else its class, dimension and alpha."""
        return self.origin or f"<{type(self).__name__} dim={self.dim} alpha={self.alpha:.6g}>"

    def _c(self, name: str, x):
        """The numpy attribute ``name`` in the backend, dtype and device of ``x`` (cached)."""
        value = getattr(self, name)
        if not arrays.is_tensor(x):
            return value
        key = (name, x.dtype, x.device)
        if key not in self._backend_constants:
            self._backend_constants[key] = arrays.like(value, x)
        return self._backend_constants[key]

    # oracles ---------------------------------------------------------------------------------
    @abstractmethod
    def inner_loss(self, x) -> float: ...

    @abstractmethod
    def outer_loss(self, y) -> float: ...

    @abstractmethod
    def inner_grad(self, x): ...

    @abstractmethod
    def outer_grad(self, y): ...

    @abstractmethod
    def inner_hess(self, x) -> np.ndarray: ...

    @abstractmethod
    def outer_hess(self, y) -> np.ndarray: ...

    @_checks_point
    def inner_hvp(self, x, v):
        """``hess f(x) v``: the Hessian-vector oracle of :func:`fobtheory.estimators.maml_hvp`."""
        return self.inner_hess(x) @ v

    @abstractmethod
    def inner_third(self, x, v) -> np.ndarray:
        """``D3f(x)[v]``: the directional derivative of hess f at x along v (a matrix)."""

    # closed forms ----------------------------------------------------------------------------
    def iterates(self, x, inner_steps: int = 1) -> list[np.ndarray]:
        """``[x_0, ..., x_K]`` of K inner gradient steps from x."""
        x = _as_point(x, self.dim)
        xs = [x]
        for _ in range(integer("inner_steps", inner_steps)):
            xs.append(xs[-1] - self.alpha * self.inner_grad(xs[-1]))
        return xs

    def adapt(self, x, inner_steps: int = 1) -> np.ndarray:
        """``phi^K(x)``: the adapted parameters after K inner steps."""
        return self.iterates(x, inner_steps)[-1]

    def meta_loss(self, x, inner_steps: int = 1) -> float:
        """``Phi(x) = F(phi^K(x))``."""
        return float(self.outer_loss(self.adapt(x, inner_steps)))

    def _backward(self, x, inner_steps, hessian: bool):
        xs = self.iterates(x, inner_steps)
        eye = np.eye(self.dim)
        g = self.outer_grad(xs[-1])
        S = self.outer_hess(xs[-1]) if hessian else None
        for xk in reversed(xs[:-1]):
            M = eye - self.alpha * self.inner_hess(xk)
            if hessian:
                S = M @ S @ M - self.alpha * self.inner_third(xk, g)
            g = M @ g
        return g, S

    def meta_grad(self, x, inner_steps: int = 1) -> np.ndarray:
        """Exact ``grad Phi(x) = prod_k (I - a H(x_k)) grad F(x_K)``."""
        return self._backward(x, inner_steps, hessian=False)[0]

    def meta_hessian(self, x, inner_steps: int = 1) -> np.ndarray:
        """Exact ``hess Phi(x)``, third-derivative terms included (backward recursion)."""
        S = self._backward(x, inner_steps, hessian=True)[1]
        return (S + S.T) / 2

    def smoothness_constants(self) -> tuple[float, float]:
        """Theory's ``(L0, L1)`` with ``|hess Phi| <= L0 + L1 |grad Phi|`` for K = 1:
        ``L0 = (1 + a L)^2 L_F`` and ``L1 = a rho / (1 - a L)``."""
        a = self.alpha
        return (1 + a * self.L) ** 2 * self.L_F, a * self.rho / (1 - a * self.L)


# ---------------------------------------------------------------------------------------------
# quadratic tasks


class QuadraticTask(MetaTask):
    """``f(x) = (x-a)^T A (x-a) / 2`` and ``F(y) = (y-b)^T B (y-b) / 2``.

    The inner step is affine, ``phi^K(x) = a + M^K (x - a)`` with ``M = I - alpha A``, so
    ``grad Phi = M^K B (phi^K(x) - b)``, ``hess Phi = M^K B M^K`` and ``rho = 0``:
    the MAML objective of a quadratic is L-smooth.
    """

    def __init__(self, A, a, B, b, *, alpha: float):
        super().__init__()
        self.A = _symmetric("A", A)
        self.dim = self.A.shape[0]
        self.B = _symmetric("B", B, self.dim)
        self.a = _as_point(a, self.dim)
        self.b = _as_point(b, self.dim)
        self.L = float(np.abs(np.linalg.eigvalsh(self.A)).max())
        self.L_F = float(np.abs(np.linalg.eigvalsh(self.B)).max())
        self.rho = 0.0
        self.alpha = check_alpha(alpha, self.L)

    def inner_loss(self, x):
        r = np.asarray(x) - self.a
        return 0.5 * r @ self.A @ r

    def outer_loss(self, y):
        r = np.asarray(y) - self.b
        return 0.5 * r @ self.B @ r

    def inner_grad(self, x):
        return self._c("A", x) @ (x - self._c("a", x))

    def outer_grad(self, y):
        return self._c("B", y) @ (y - self._c("b", y))

    def inner_hess(self, x):
        return self.A

    def outer_hess(self, y):
        return self.B

    def inner_third(self, x, v):
        return np.zeros((self.dim, self.dim))

    @staticmethod
    def stacked_gradients(tasks):
        """``(inner, outer)`` on points grouped ``(m, B, d)``: ``A_b (x - a_b)``, ``B_b (y - b_b)``."""
        A, a, B, b = (_Stack(tasks, name) for name in ("A", "a", "B", "b"))
        return (lambda P: _einsum("bij,mbj->mbi", A(P), P - a(P)),
                lambda P: _einsum("bij,mbj->mbi", B(P), P - b(P)))


# ---------------------------------------------------------------------------------------------
# logistic-regression tasks


def _sigmoid(t):
    """Logistic function, stable for large |Re t|, holomorphic (complex input allowed)."""
    xp = arrays.namespace(t)
    positive = arrays.real(t) >= 0
    e = xp.exp(xp.where(positive, -t, t))  # |e| <= 1: no overflow
    return xp.where(positive, 1 / (1 + e), e / (1 + e))


def _einsum(spec: str, *operands):
    return arrays.namespace(operands[-1]).einsum(spec, *operands)


class _Stack:
    """An attribute of B tasks stacked on a leading axis, served in the backend, dtype and
    device of the points it meets (converted once per kind of point)."""

    def __init__(self, tasks, name: str, shape=lambda v: v):
        try:
            self.value = shape(np.stack([np.asarray(getattr(t, name), dtype=np.float64) for t in tasks]))
        except ValueError as err:
            raise ValueError(f"tasks cannot be stacked: {name} differs in shape ({err})") from None
        self._converted = {}

    def __call__(self, like):
        if not arrays.is_tensor(like):
            return self.value
        key = (like.dtype, like.device)
        if key not in self._converted:
            self._converted[key] = arrays.like(self.value, like)
        return self._converted[key]


def _softplus(t):
    """``log(1 + exp(t))`` for real t, stable."""
    return np.logaddexp(0.0, t)


class LogisticTask(MetaTask):
    """L2-regularised logistic regression, support set for f and query set for F.

    ``f(w) = mean_j log(1 + exp(-y_j z_j.w)) + reg |w|^2 / 2`` on the support set
    ``(Z, y)``, labels in {-1, +1}; F is the same loss on the query set (regulariser
    ``query_reg``). With ``s_j = sigmoid(t_j)``, ``t_j = y_j z_j.w`` (``1 - s_j`` is
    evaluated as ``sigmoid(-t_j)``, free of cancellation):

        grad f = -mean_j (1 - s_j) y_j z_j + reg w
        hess f = mean_j s_j (1 - s_j) z_j z_j^T + reg I
        D3f[v] = mean_j s_j (1 - s_j) (1 - 2 s_j) y_j (z_j.v) z_j z_j^T

    Constants: ``L = lambda_max(Z^T Z / n) / 4 + reg``,
    ``rho = max|s(1-s)(1-2s)| max_j |z_j| lambda_max(Z^T Z / n)`` with
    ``max|s(1-s)(1-2s)| = 1 / (6 sqrt 3)``.
    """

    def __init__(self, Z, y, Zq, yq, *, alpha: float, reg: float = 0.1, query_reg: float | None = None):
        super().__init__()
        self.Z, self.y = self._data("support", Z, y)
        self.Zq, self.yq = self._data("query", Zq, yq)
        self.dim = self.Z.shape[1]
        if self.Zq.shape[1] != self.dim:
            raise ValueError(f"query features have {self.Zq.shape[1]} columns, support has {self.dim}")
        self.reg = float(reg)
        self.query_reg = self.reg if query_reg is None else float(query_reg)
        if self.reg < 0 or self.query_reg < 0:
            raise ValueError(f"reg and query_reg must be >= 0, got {self.reg}, {self.query_reg}")
        gram = np.linalg.eigvalsh(self.Z.T @ self.Z / len(self.y)).max()
        gram_q = np.linalg.eigvalsh(self.Zq.T @ self.Zq / len(self.yq)).max()
        self.L = float(gram / 4 + self.reg)
        self.L_F = float(gram_q / 4 + self.query_reg)
        self.rho = float(gram * np.linalg.norm(self.Z, axis=1).max() / (6 * math.sqrt(3)))
        self.alpha = check_alpha(alpha, self.L)
        self.yZ = self.y[:, None] * self.Z
        self.yZq = self.yq[:, None] * self.Zq

    @staticmethod
    def _data(name, Z, y):
        Z = np.asarray(Z, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if Z.ndim != 2 or y.shape != (Z.shape[0],):
            raise ValueError(f"{name} data must be Z of shape (n, d) and y of shape (n,), got {Z.shape}, {y.shape}")
        if not np.isin(y, (-1.0, 1.0)).all():
            raise ValueError(f"{name} labels must be -1 or +1")
        return Z, y

    def _loss(self, yZ, reg, w):
        w = np.asarray(w, dtype=np.float64)
        return float(np.mean(_softplus(-(yZ @ w))) + 0.5 * reg * w @ w)

    def _grad(self, name, reg, w):
        yZ = self._c(name, w)
        return -(yZ.T @ _sigmoid(-(yZ @ w))) / yZ.shape[0] + reg * w

    def _hess(self, yZ, reg, w):
        t = yZ @ np.asarray(w, dtype=np.float64)
        return (yZ.T * (_sigmoid(t) * _sigmoid(-t))) @ yZ / len(t) + reg * np.eye(self.dim)

    def inner_loss(self, x):
        return self._loss(self.yZ, self.reg, x)

    def outer_loss(self, y):
        return self._loss(self.yZq, self.query_reg, y)

    def inner_grad(self, x):
        return self._grad("yZ", self.reg, x)

    def outer_grad(self, y):
        return self._grad("yZq", self.query_reg, y)

    def inner_hess(self, x):
        return self._hess(self.yZ, self.reg, x)

    def outer_hess(self, y):
        return self._hess(self.yZq, self.query_reg, y)

    @staticmethod
    def stacked_gradients(tasks):
        """``(inner, outer)`` on points grouped ``(m, B, d)``: the gradients above, task data
        stacked on the B axis (same sample counts across tasks)."""
        def gradient(name, reg):
            yZ, r = _Stack(tasks, name), _Stack(tasks, reg, lambda v: np.asarray(v)[:, None])
            return lambda W: (-_einsum("bnd,mbn->mbd", yZ(W), _sigmoid(-_einsum("bnd,mbd->mbn", yZ(W), W)))
                              / yZ.value.shape[1] + r(W) * W)
        return gradient("yZ", "reg"), gradient("yZq", "query_reg")

    def inner_third(self, x, v):
        yZ = self.yZ
        t = yZ @ np.asarray(x, dtype=np.float64)
        sp, sm = _sigmoid(t), _sigmoid(-t)  # s and 1 - s, each without cancellation
        c = sp * sm * (sm - sp) * (yZ @ np.asarray(v, dtype=np.float64))  # y_j^2 = 1
        return (yZ.T * c) @ yZ / len(t)


# ---------------------------------------------------------------------------------------------
# the one-dimensional (L0, L1)-smooth task


class CosineTask(MetaTask):
    """One dimension: ``f(x) = -cos x``, ``F(y) = (y - target)^2 / 2``.

    ``L = rho = L_F = 1``. With one step, ``Phi'(x) = (1 - a cos x)(x - a sin x - target)``
    and ``Phi''(x) = (1 - a cos x)^2 + a sin x (x - a sin x - target)``: both grow linearly
    in |x|, so Phi is not L-smooth, but ``|Phi''| <= (1 + a)^2 + a / (1 - a) |Phi'|``.
    """

    def __init__(self, *, alpha: float = 0.5, target: float = 0.0):
        super().__init__()
        self.dim = 1
        self.L = self.rho = self.L_F = 1.0
        self.alpha = check_alpha(alpha, self.L)
        self.target = float(target)
        self.t = np.array([self.target])

    def inner_loss(self, x):
        return float(-np.cos(np.asarray(x, dtype=np.float64)[0]))

    def outer_loss(self, y):
        return float(0.5 * (np.asarray(y, dtype=np.float64)[0] - self.target) ** 2)

    def inner_grad(self, x):
        return arrays.namespace(x).sin(x)

    def outer_grad(self, y):
        return y - self._c("t", y)

    def inner_hess(self, x):
        return np.cos(np.asarray(x, dtype=np.float64)).reshape(1, 1)

    def outer_hess(self, y):
        return np.ones((1, 1))

    def inner_third(self, x, v):
        return (-np.sin(np.asarray(x, dtype=np.float64)) * np.asarray(v, dtype=np.float64)).reshape(1, 1)

    @staticmethod
    def stacked_gradients(tasks):
        """``(inner, outer)`` on points grouped ``(m, B, 1)``: ``sin x`` and ``y - target_b``."""
        t = _Stack(tasks, "t")
        return (lambda P: arrays.namespace(P).sin(P)), (lambda P: P - t(P))


# ---------------------------------------------------------------------------------------------
# a piecewise-smooth task: regression through a ReLU


def _logcosh(t):
    """``log cosh t`` for real t, stable: ``|t| + log1p(exp(-2|t|)) - log 2``."""
    a = np.abs(t)
    return a + np.log1p(np.exp(-2 * a)) - math.log(2)


class ReluRegressionTask(MetaTask):
    """Regression through a ReLU, a piecewise-smooth task with kinks at ``z_j.w = 0``.

    ``f(w) = mean_j logcosh(relu(z_j.w) - t_j) + reg |w|^2 / 2`` on the support set ``(Z, t)``
    and F the same loss on the query set. Where the pattern ``m_j = 1[z_j.w > 0]`` is
    constant f equals the smooth ``f_m`` (relu(s) replaced by m s); with ``r_j = m_j z_j.w - t_j``

        grad f_m = mean_j m_j tanh(r_j) z_j + reg w
        hess f_m = mean_j m_j sech^2(r_j) z_j z_j^T + reg I
        D3f_m[v] = -2 mean_j m_j sech^2(r_j) tanh(r_j) (z_j.v) z_j z_j^T

    so the closed forms of :class:`MetaTask` hold almost everywhere, with the pattern of each
    iterate (as autograd's meta-gradient of a ReLU network). The gradient jumps by
    ``-tanh(t_j) z_j / n`` across a kink. The oracles are anchored (see
    :mod:`fobtheory.estimators`): ``inner_grad(w, anchor=a)`` is ``grad f_m(w)`` with the
    pattern m of a. Constants (of the pieces): ``L = lambda_max(Z^T Z / n) + reg``,
    ``rho = 4 / (3 sqrt 3) max_j |z_j| lambda_max(Z^T Z / n)``.
    """

    def __init__(self, Z, t, Zq, tq, *, alpha: float, reg: float = 0.1):
        super().__init__()
        self.Z, self.t = self._data("support", Z, t)
        self.Zq, self.tq = self._data("query", Zq, tq)
        self.dim = self.Z.shape[1]
        if self.Zq.shape[1] != self.dim:
            raise ValueError(f"query features have {self.Zq.shape[1]} columns, support has {self.dim}")
        self.reg = float(reg)
        if self.reg < 0:
            raise ValueError(f"reg must be >= 0, got {self.reg}")
        gram = np.linalg.eigvalsh(self.Z.T @ self.Z / len(self.t)).max()
        self.L = float(gram + self.reg)
        self.L_F = float(np.linalg.eigvalsh(self.Zq.T @ self.Zq / len(self.tq)).max() + self.reg)
        self.rho = float(4 / (3 * math.sqrt(3)) * np.linalg.norm(self.Z, axis=1).max() * gram)
        self.alpha = check_alpha(alpha, self.L)

    @staticmethod
    def _data(name, Z, t):
        Z, t = np.asarray(Z, dtype=np.float64), np.asarray(t, dtype=np.float64)
        if Z.ndim != 2 or t.shape != (Z.shape[0],):
            raise ValueError(f"{name} data must be Z of shape (n, d) and t of shape (n,), got {Z.shape}, {t.shape}")
        return Z, t

    def _grad(self, Z, t, w, anchor):
        """``grad f_m(w)`` with m the pattern of ``anchor`` (of w itself when None)."""
        xp = arrays.namespace(w)
        s = Z @ w
        m = arrays.real(Z @ anchor if anchor is not None else s) > 0
        return Z.T @ xp.where(m, xp.tanh(s - t), 0 * s) / len(t) + self.reg * w

    def _pieces(self, Z, t, w):
        """Pattern m and residual r at w (numpy)."""
        s = Z @ np.asarray(w, dtype=np.float64)
        m = s > 0
        return m, m * s - t

    def _loss(self, Z, t, w):
        w = np.asarray(w, dtype=np.float64)
        return float(np.mean(_logcosh(np.maximum(Z @ w, 0) - t)) + 0.5 * self.reg * w @ w)

    def _hess(self, Z, t, w):
        m, r = self._pieces(Z, t, w)
        return (Z.T * (m / np.cosh(r) ** 2)) @ Z / len(t) + self.reg * np.eye(self.dim)

    def inner_loss(self, x):
        return self._loss(self.Z, self.t, x)

    def outer_loss(self, y):
        return self._loss(self.Zq, self.tq, y)

    def inner_grad(self, x, anchor=None):
        return self._grad(self._c("Z", x), self._c("t", x), x, anchor)

    def outer_grad(self, y, anchor=None):
        return self._grad(self._c("Zq", y), self._c("tq", y), y, anchor)

    def inner_hess(self, x):
        return self._hess(self.Z, self.t, x)

    def outer_hess(self, y):
        return self._hess(self.Zq, self.tq, y)

    def inner_third(self, x, v):
        m, r = self._pieces(self.Z, self.t, x)
        c = -2 * m * np.tanh(r) / np.cosh(r) ** 2 * (self.Z @ np.asarray(v, dtype=np.float64))
        return (self.Z.T * c) @ self.Z / len(self.t)

    def kink_distances(self, x) -> np.ndarray:
        """Distance of x to each support kink hyperplane ``z_j.w = 0``: ``|z_j.x| / |z_j|``."""
        return np.abs(self.Z @ _as_point(x, self.dim)) / np.linalg.norm(self.Z, axis=1)

    def next_to_kink(self, x, gap: float) -> np.ndarray:
        """x moved to distance ``gap`` from its nearest support kink, on the same side."""
        x = _as_point(x, self.dim)
        j = int(np.argmin(self.kink_distances(x)))
        z = self.Z[j]
        side = 1.0 if z @ x > 0 else -1.0
        return x - ((z @ x - side * gap * np.linalg.norm(z)) / (z @ z)) * z

    @staticmethod
    def stacked_gradients(tasks):
        """``(inner, outer)`` on points grouped ``(m, B, d)``, anchored by ``(B, d)`` arrays."""
        reg = _Stack(tasks, "reg", lambda v: np.asarray(v)[:, None])

        def gradient(zname, tname):
            Z, t = _Stack(tasks, zname), _Stack(tasks, tname)

            def grad(W, anchor=None):
                xp = arrays.namespace(W)
                s = _einsum("bnd,mbd->mbn", Z(W), W)
                pattern = s if anchor is None else _einsum("bnd,bd->bn", Z(W), anchor)[None]
                r = xp.where(arrays.real(pattern) > 0, xp.tanh(s - t(W)[None]), 0 * s)
                return _einsum("bnd,mbn->mbd", Z(W), r) / Z.value.shape[1] + reg(W) * W
            return grad
        return gradient("Z", "t"), gradient("Zq", "tq")


# ---------------------------------------------------------------------------------------------
# task distributions


class MetaProblem(Sequence):
    """A finite task distribution: the meta-objective and its derivatives are task means."""

    origin: str | None = None  # the factory call that made it (its repr), None when built by hand

    def __init__(self, tasks):
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("a MetaProblem needs at least one task")
        dims = {t.dim for t in self.tasks}
        if len(dims) != 1:
            raise ValueError(f"tasks must share one dimension, got {sorted(dims)}")
        self.dim = dims.pop()
        self.alpha = self.tasks[0].alpha
        if any(t.alpha != self.alpha for t in self.tasks):
            raise ValueError("tasks must share one inner step alpha")

    def __len__(self):
        return len(self.tasks)

    def __repr__(self):
        """The factory call that made the problem, else its tasks' classes, dimension and alpha."""
        kinds = "/".join(dict.fromkeys(type(t).__name__ for t in self.tasks))
        return self.origin or f"<MetaProblem of {len(self)} {kinds} tasks, dim={self.dim} alpha={self.alpha:.6g}>"

    def __getitem__(self, i):
        return self.tasks[i]

    def meta_loss(self, x, inner_steps: int = 1) -> float:
        return float(np.mean([t.meta_loss(x, inner_steps) for t in self.tasks]))

    def meta_grad(self, x, inner_steps: int = 1) -> np.ndarray:
        return np.mean([t.meta_grad(x, inner_steps) for t in self.tasks], axis=0)

    def meta_hessian(self, x, inner_steps: int = 1) -> np.ndarray:
        return np.mean([t.meta_hessian(x, inner_steps) for t in self.tasks], axis=0)

    def stacked_oracles(self):
        """Vectorised ``(inner_grad, outer_grad)`` of all tasks, the oracles of the estimators'
        ``batched=True``: an ``(m*B, d)`` array (row ``i*B + b`` a point of task b) maps to the
        gradients in the same layout. One vectorised evaluation when every task is of one
        class with ``stacked_gradients`` (and shapes agree); else one task oracle per row.
        Anchored task oracles (:class:`ReluRegressionTask`) give anchored stacked oracles."""
        B, kind = len(self.tasks), type(self.tasks[0])
        try:
            if any(type(t) is not kind for t in self.tasks) or not hasattr(kind, "stacked_gradients"):
                raise ValueError("mixed task classes")
            inner, outer = kind.stacked_gradients(self.tasks)
        except ValueError:  # mixed classes or shapes: task by task
            def rows(name):
                def each(P):
                    xp = arrays.namespace(P)
                    return xp.stack([getattr(self.tasks[b], name)(P[i, b]) for i in range(P.shape[0])
                                     for b in range(B)]).reshape(P.shape)
                return each
            inner, outer = rows("inner_grad"), rows("outer_grad")

        def grouped(fn):
            if not accepts_anchor(fn):
                return lambda P: fn(P.reshape(-1, B, *P.shape[1:])).reshape(P.shape)
            return lambda P, anchor=None: fn(P.reshape(-1, B, *P.shape[1:]), anchor).reshape(P.shape)

        return grouped(inner), grouped(outer)

    def constants(self) -> dict[str, float]:
        """Worst-case L, rho, L_F over the tasks and theory's (L0, L1)."""
        L = max(t.L for t in self.tasks)
        rho = max(t.rho for t in self.tasks)
        L_F = max(t.L_F for t in self.tasks)
        a = self.alpha
        return {"L": L, "rho": rho, "L_F": L_F, "L0": (1 + a * L) ** 2 * L_F, "L1": a * rho / (1 - a * L)}


def _recorded(factory):
    """``factory`` whose MetaProblem and tasks remember the call that made them, every argument
    spelled out (family, dimension, seed, ...), as their repr: ``quadratic_tasks(n_tasks=2,
    dim=3, ..., seed=7)`` and its task ``quadratic_tasks(...)[1]``, so that a failing property
    test prints the problem that fails, ready to rebuild."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def made(*args, **kwargs):
        problem = factory(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        problem.origin = f"{factory.__name__}({', '.join(f'{k}={v!r}' for k, v in bound.arguments.items())})"
        for i, task in enumerate(problem.tasks):
            task.origin = f"{problem.origin}[{i}]"
        return problem
    return made


def _spectrum_matrix(rng, dim: int, top: float, condition: float) -> np.ndarray:
    """Random symmetric matrix with eigenvalues log-spaced in [top/condition, top]."""
    positive("condition", condition)
    if condition < 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    eig = np.geomspace(top / condition, top, dim) if dim > 1 else np.array([top])
    return (q * eig) @ q.T


def _resolve_alpha(alpha, L_max: float, alpha_L: float) -> float:
    if alpha is None:
        if not 0 < alpha_L < 1:
            raise ValueError(f"alpha_L must be in (0, 1), got {alpha_L}")
        return alpha_L / L_max
    return alpha


@_recorded
def quadratic_tasks(
    n_tasks: int,
    dim: int,
    *,
    alpha: float | None = None,
    alpha_L: float = 0.5,
    L: float = 1.0,
    condition: float = 10.0,
    outer_condition: float = 10.0,
    spread: float = 1.0,
    seed: int = 0,
) -> MetaProblem:
    """Random quadratic tasks: inner Hessians with spectrum in [L/condition, L], outer
    Hessians in [1/outer_condition, 1], centres ``a_i ~ N(0, spread^2 I)`` and query
    centres ``b_i = a_i + N(0, spread^2 I / 4)``. ``alpha`` defaults to ``alpha_L / L``."""
    n_tasks, dim = integer("n_tasks", n_tasks), integer("dim", dim)
    positive("L", L)
    rng = np.random.default_rng(seed)
    alpha = _resolve_alpha(alpha, L, alpha_L)

    def make(i):
        A = _spectrum_matrix(rng, dim, L, condition)
        B = _spectrum_matrix(rng, dim, 1.0, outer_condition)
        a = spread * rng.standard_normal(dim)
        b = a + 0.5 * spread * rng.standard_normal(dim)
        return QuadraticTask(A, a, B, b, alpha=alpha)

    return MetaProblem(_build(make, n_tasks))


@_recorded
def logistic_tasks(
    n_tasks: int,
    dim: int,
    *,
    n_samples: int = 20,
    n_query: int | None = None,
    alpha: float | None = None,
    alpha_L: float = 0.5,
    reg: float = 0.1,
    condition: float = 1.0,
    feature_scale: float = 1.0,
    task_spread: float = 1.0,
    seed: int = 0,
) -> MetaProblem:
    """Random logistic-regression tasks sharing a common weight vector.

    Features ``z ~ N(0, Sigma)`` with ``Sigma``'s spectrum log-spaced in
    ``feature_scale^2 * [1/condition, 1]``; task weights ``w_i = w + task_spread * N(0, I/d)``
    around a shared ``w ~ N(0, 4 I / d)``; labels drawn from the logistic model.
    ``alpha`` defaults to ``alpha_L / max_i L_i``; an explicit alpha with
    ``alpha L_i >= 1`` for some task is refused.
    """
    n_tasks, dim = integer("n_tasks", n_tasks), integer("dim", dim)
    n_samples = integer("n_samples", n_samples)
    n_query = n_samples if n_query is None else integer("n_query", n_query)
    positive("feature_scale", feature_scale)
    rng = np.random.default_rng(seed)
    root = np.linalg.cholesky(_spectrum_matrix(rng, dim, feature_scale**2, condition))
    w_shared = 2 * rng.standard_normal(dim) / math.sqrt(dim)
    data = []
    for _ in range(n_tasks):
        w = w_shared + task_spread * rng.standard_normal(dim) / math.sqrt(dim)
        sets = []
        for n in (n_samples, n_query):
            Z = rng.standard_normal((n, dim)) @ root.T
            y = np.where(rng.random(n) < 1 / (1 + np.exp(-Z @ w)), 1.0, -1.0)
            sets += [Z, y]
        data.append(sets)
    if alpha is None:
        L_max = max(np.linalg.eigvalsh(Z.T @ Z / len(y)).max() / 4 + reg for Z, y, _, _ in data)
        alpha = _resolve_alpha(None, L_max, alpha_L)
    return MetaProblem(_build(lambda i: LogisticTask(*data[i], alpha=alpha, reg=reg), n_tasks))


@_recorded
def relu_tasks(
    n_tasks: int,
    dim: int,
    *,
    n_samples: int = 20,
    alpha: float | None = None,
    alpha_L: float = 0.5,
    reg: float = 0.1,
    task_spread: float = 1.0,
    seed: int = 0,
) -> MetaProblem:
    """Random :class:`ReluRegressionTask` s: features ``z ~ N(0, I/d)`` (so |z| ~ 1), targets
    ``t_j = relu(z_j.w_i) + 0.1 N(0, 1)`` of task weights ``w_i = w + task_spread N(0, I/d)``
    around a shared ``w ~ N(0, 4 I / d)``. ``alpha`` defaults to ``alpha_L / max_i L_i``."""
    n_tasks, dim, n_samples = integer("n_tasks", n_tasks), integer("dim", dim), integer("n_samples", n_samples)
    rng = np.random.default_rng(seed)
    w_shared = 2 * rng.standard_normal(dim) / math.sqrt(dim)
    data = []
    for _ in range(n_tasks):
        w = w_shared + task_spread * rng.standard_normal(dim) / math.sqrt(dim)
        sets = []
        for _ in range(2):
            Z = rng.standard_normal((n_samples, dim)) / math.sqrt(dim)
            sets += [Z, np.maximum(Z @ w, 0) + 0.1 * rng.standard_normal(n_samples)]
        data.append(sets)
    L_max = max(np.linalg.eigvalsh(Z.T @ Z / n_samples).max() + reg for Z, *_ in data)
    alpha = _resolve_alpha(alpha, L_max, alpha_L)
    return MetaProblem(_build(lambda i: ReluRegressionTask(*data[i], alpha=alpha, reg=reg), n_tasks))


def _build(make, n_tasks: int) -> list[MetaTask]:
    """``[make(0), ..., make(n-1)]``, naming the task in a construction error."""
    tasks = []
    for i in range(n_tasks):
        try:
            tasks.append(make(i))
        except ValueError as err:
            raise ValueError(f"task {i}: {err}") from None
    return tasks
