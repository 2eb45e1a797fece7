"""Meta-gradients of ``torch.nn.Module`` s, and the MNIST-1D CNN.

The first-order methods reuse :mod:`fobtheory.estimators` unchanged: the parameters are
flattened into one vector ``theta`` and the oracles are

    inner_grad(theta) = grad_theta loss(model(theta; x_support), y_support)
    outer_grad(theta) = grad_theta loss(model(theta; x_query),   y_query)

evaluated with ``torch.func.functional_call``, ``vmap``-ed over the tasks of a meta-batch
and over the points of a stencil; each call builds and frees one forward graph, so no
activation is kept across inner steps. ``maml`` differentiates through the K inner steps
(double backward): the second-order reference, whose graph holds the activations of every
step.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from . import estimators
from .checks import integer, positive

METHODS = ("maml", "fo_maml", "reptile", "fob_forward", "fob_symmetric")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus, "tanh": nn.Tanh}


class CNN1D(nn.Module):
    """The MNIST-1D reference CNN, widened and deepened on demand.

    ``depth`` Conv1d layers of ``width`` channels (kernel 5 then 3, padding 1; the first
    three with stride 2, the rest with stride 1 so that deeper nets keep their activation
    length), each followed by ``activation``, then a linear classifier.
    """

    def __init__(self, width: int = 25, depth: int = 3, activation: str = "relu", n_classes: int = 5,
                 length: int = 40):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        width, depth, n_classes, length = (integer("width", width), integer("depth", depth),
                                           integer("n_classes", n_classes), integer("length", length))
        layers, channels = [], 1
        for i in range(depth):
            kernel, stride = (5 if i == 0 else 3), (2 if i < 3 else 1)
            layers += [nn.Conv1d(channels, width, kernel, stride=stride, padding=1), ACTIVATIONS[activation]()]
            channels = width
            length = (length + 2 - kernel) // stride + 1
            if length < 1:
                raise ValueError(f"depth={depth} shrinks the signal to nothing; use a longer input or fewer layers")
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * length, n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


# ---------------------------------------------------------------------------------------------
# flat parameter vectors


def parameter_spec(model: nn.Module) -> list[tuple[str, torch.Size]]:
    return [(name, p.shape) for name, p in model.named_parameters()]


def flatten(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(theta: torch.Tensor, spec) -> dict[str, torch.Tensor]:
    """Views of ``theta`` shaped like the parameters (gradients flow back to theta)."""
    out, start = {}, 0
    for name, shape in spec:
        n = shape.numel()
        out[name] = theta[start:start + n].view(shape)
        start += n
    if start != theta.numel():
        raise ValueError(f"theta has {theta.numel()} entries, the model {start}")
    return out


def stacked_loss_gradient(model: nn.Module, data, loss: Callable = F.cross_entropy) -> Callable:
    """The vectorised oracle of a batch of B tasks with data ``(X, Y)``, ``X`` of shape
    ``(B, n, ...)``: rows ``(m*B, P)`` of flat parameters -> their loss gradients, row
    ``i*B + b`` on task b's data (the layout of ``fobtheory.estimators``' ``batched=True``).
    One ``vmap``-ed call evaluates all rows; no graph outlives the call."""
    X, Y = data
    spec = parameter_spec(model)

    def task_loss(theta, x, y):
        return loss(functional_call(model, unflatten(theta, spec), (x,)), y)

    per_row = vmap(grad(task_loss))

    def oracle(thetas: torch.Tensor) -> torch.Tensor:
        m = thetas.shape[0] // X.shape[0]
        with torch.enable_grad():
            return per_row(thetas.detach(), X.repeat(m, *[1] * (X.ndim - 1)), Y.repeat(m, *[1] * (Y.ndim - 1)))

    return oracle


# ---------------------------------------------------------------------------------------------
# meta-gradients


def _maml(model, supports, queries, alpha, inner_steps, loss, thetas):
    """Second-order MAML: ``grad`` through the K inner ``grad`` steps (torch.func composes
    them into double backward, as ``create_graph=True`` does), ``vmap``-ed over tasks."""
    spec = parameter_spec(model)

    def task_loss(theta, x, y):
        return loss(functional_call(model, unflatten(theta, spec), (x,)), y)

    def objective(theta, xs, ys, xq, yq):
        for _ in range(inner_steps):
            theta = theta - alpha * grad(task_loss)(theta, xs, ys)
        return task_loss(theta, xq, yq)

    with torch.enable_grad():
        return vmap(grad(objective))(thetas, supports[0], supports[1], queries[0], queries[1])


def meta_gradient_batch(model: nn.Module, supports, queries, *, method: str, alpha: float, inner_steps: int = 1,
                        delta: float = 1e-3, loss: Callable = F.cross_entropy, normalize: bool = True,
                        kink_tol: float | None = None, store_iterates: bool = True, stack_stencil: bool = True,
                        return_info: bool = False):
    """Meta-gradients of B tasks at once.

    ``supports = (X, Y)`` with X of shape (B, n, ...), likewise ``queries``. ``method`` is one
    of :data:`METHODS`: ``maml`` (second order, differentiating through the inner loop),
    ``fo_maml``, ``reptile``, ``fob_forward``, ``fob_symmetric`` (gradients only, by
    :func:`fobtheory.estimators.fob_maml` on the flat parameters). FO-B options: ``delta``
    (with ``normalize=True`` the parameter displacement has norm delta), the kink guard
    ``kink_tol``, ``store_iterates`` (``False``: recompute the inner iterates, memory flat
    in K) and ``stack_stencil`` (``False``: one oracle call per stencil point, the peak
    memory of a single gradient, slower).

    Returns ``{parameter name: (B, *shape) tensor}``, row b the meta-gradient of task b,
    and with ``return_info`` the estimator's ``EstimateInfo`` (``None`` for maml).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    positive("alpha", alpha)
    integer("inner_steps", inner_steps)
    B = supports[0].shape[0]
    if not (supports[1].shape[0] == queries[0].shape[0] == queries[1].shape[0] == B):
        raise ValueError(f"supports and queries must hold the same number of tasks, got shapes "
                         f"{[tuple(t.shape) for t in (*supports, *queries)]}")
    spec = parameter_spec(model)
    thetas = flatten({n: p.detach() for n, p in model.named_parameters()}).expand(B, -1)
    info = None
    if method == "maml":
        g = _maml(model, supports, queries, alpha, inner_steps, loss, thetas)
    else:
        inner, outer = stacked_loss_gradient(model, supports, loss), stacked_loss_gradient(model, queries, loss)
        common = dict(alpha=alpha, inner_steps=inner_steps, batched=True, return_info=True)
        if method == "fo_maml":
            g, info = estimators.fo_maml(thetas, inner, outer, **common)
        elif method == "reptile":
            g, info = estimators.reptile(thetas, inner, outer, **common)
        else:
            g, info = estimators.fob_maml(thetas, inner, outer, delta=delta, normalize=normalize, kink_tol=kink_tol,
                                          store_iterates=store_iterates, stack_stencil=stack_stencil,
                                          scheme=method.removeprefix("fob_"), **common)
    out = {name: view.reshape(B, *shape) for (name, shape), view in
           zip(spec, torch.split(g, [shape.numel() for _, shape in spec], dim=1))}
    return (out, info) if return_info else out


def meta_gradient(model: nn.Module, support, query, *, method: str, alpha: float, inner_steps: int = 1,
                  delta: float = 1e-3, loss: Callable = F.cross_entropy, return_info: bool = False, **options):
    """The meta-gradient of ``loss(model(phi^K(theta); x_query), y_query)`` for one task.

    ``support`` and ``query`` are ``(x, y)`` pairs. Methods and ``options`` (``normalize``,
    ``kink_tol``, ``store_iterates``, ``stack_stencil``) are those of
    :func:`meta_gradient_batch`. Returns ``{parameter name: gradient}`` (and the
    ``EstimateInfo``, ``None`` for maml, with ``return_info``).
    """
    batch = lambda pair: tuple(t.unsqueeze(0) for t in pair)  # noqa: E731
    grads, info = meta_gradient_batch(model, batch(support), batch(query), method=method, alpha=alpha,
                                      inner_steps=inner_steps, delta=delta, loss=loss, return_info=True, **options)
    grads = {name: g[0] for name, g in grads.items()}
    return (grads, info) if return_info else grads


def adapted_accuracy(model: nn.Module, supports, queries, *, alpha: float, inner_steps: int = 1,
                     loss: Callable = F.cross_entropy) -> torch.Tensor:
    """Query accuracy of each of B tasks after K inner gradient steps on its support set
    (``supports``, ``queries`` batched as in :func:`meta_gradient_batch`); shape (B,)."""
    spec = parameter_spec(model)
    inner = stacked_loss_gradient(model, supports, loss)
    thetas = flatten({n: p.detach() for n, p in model.named_parameters()}).expand(supports[0].shape[0], -1)
    for _ in range(integer("inner_steps", inner_steps)):
        thetas = thetas - positive("alpha", alpha) * inner(thetas)
    with torch.no_grad():
        logits = vmap(lambda th, x: functional_call(model, unflatten(th, spec), (x,)))(thetas, queries[0])
    return (logits.argmax(-1) == queries[1]).to(torch.float64).mean(-1)
