"""Meta-gradients of ``torch.nn.Module`` s, and the MNIST-1D CNN.

The first-order methods reuse :mod:`fobtheory.estimators` unchanged: the parameters are
flattened into one vector ``theta`` and the oracles are

    inner_grad(theta) = grad_theta loss(model(theta; x_support), y_support)
    outer_grad(theta) = grad_theta loss(model(theta; x_query),   y_query)

evaluated with ``torch.func.functional_call``, ``vmap``-ed over the tasks of a meta-batch
and over the points of a stencil; each call builds and frees one forward graph, so no
activation is kept across inner steps. ``maml`` differentiates through the K inner steps
(double backward): the second-order reference, whose graph holds the activations of every
step. ``maml_hvp`` computes the same meta-gradient by the backward recursion of
Hessian-vector products (:func:`fobtheory.estimators.maml_hvp`), one inner step's
activations at a time.

Before any transform runs, :mod:`fobtheory.model_checks` checks the data against the model
and probes its forward once: BatchNorm normalises with the statistics of the set at hand and
its running buffers are left untouched, custom ``autograd.Function`` s that ``vmap`` cannot
take run task by task, and second-order methods refuse Functions without second derivatives.

FO-B methods freeze activation patterns by default (``freeze_pattern="auto"``): where the
model has kinked modules (ReLU, max-pooling, ...) the inner oracle is anchored
(:mod:`fobtheory.estimators`): at the points of a stencil around ``x_k`` it evaluates the
gradient with the activation pattern of ``x_k`` (:mod:`fobtheory.patterns`). Where plain
differences run on a kinked network anyway (``freeze_pattern=False``, the paper's
estimator, or kinks no module holds), ``fob_symmetric`` counts the steps whose one-sided
differences disagree and warns when there are any.
"""
from __future__ import annotations

import re
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from . import arrays, estimators
from .checks import integer, positive
from .model_checks import Probe, batch_statistics, check_data, require_second_order
from .models import ACTIVATIONS, CNN1D, Conv4  # noqa: F401  (re-exported: fobtheory.nn.CNN1D, .Conv4 are the contract)
from .patterns import PatternHooks, kinked_modules

METHODS = ("maml", "fo_maml", "reptile", "fob_forward", "fob_symmetric")  # the methods trained and compared
ALL_METHODS = METHODS + ("maml_hvp",)  # and exact MAML by Hessian-vector products, the memory-lean reference
SECOND_ORDER = ("maml", "maml_hvp")


# ---------------------------------------------------------------------------------------------
# flat parameter vectors


def parameter_spec(model: nn.Module) -> list[tuple[str, torch.Size]]:
    return [(name, p.shape) for name, p in model.named_parameters()]


def flatten(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(theta: torch.Tensor, spec) -> dict[str, torch.Tensor]:
    """Views of ``theta`` shaped like the parameters (gradients flow back to theta)."""
    sizes = [shape.numel() for _, shape in spec]
    if sum(sizes) != theta.numel():
        raise ValueError(f"theta has {theta.numel()} entries, the model {sum(sizes)}")
    return {name: part.view(shape) for (name, shape), part in zip(spec, theta.split(sizes))}


def _repeat(t: torch.Tensor, m: int) -> torch.Tensor:
    """m copies of t stacked on its leading axis (the rows of m groups of B tasks)."""
    return t.repeat(m, *[1] * (t.ndim - 1))


def _leaves(theta: torch.Tensor, spec) -> dict[str, torch.Tensor]:
    """The parameters in ``theta`` as separate leaf tensors that require grad."""
    return {name: t.detach().requires_grad_(True) for name, t in unflatten(theta, spec).items()}


def _autograd(fn: Callable, spec, has_aux: bool = False) -> Callable:
    """``theta -> grad_theta fn(parameters(theta), *args)`` by ``torch.autograd`` on one leaf
    per parameter, as a plain training loop does (for one task: functorch's wrapping and
    the flat vector's views cost more than they save without ``vmap``). With ``has_aux``,
    fn returns ``(loss, aux)`` and the gradient comes with aux."""
    def gradient(theta, *args):
        params = _leaves(theta, spec)
        value, aux = fn(params, *args) if has_aux else (fn(params, *args), None)
        g = flatten(dict(zip(params, torch.autograd.grad(value, list(params.values())))))
        return (g, aux) if has_aux else g
    return gradient


def _lift(spec, batched: bool, has_aux: bool = False) -> Callable:
    """``fn(parameters, *args) -> loss`` (or ``(loss, aux)``) to its gradient oracle on flat
    parameters: ``vmap`` of ``torch.func.grad`` over rows, or :func:`_autograd` for one task."""
    if not batched:
        return lambda fn: _autograd(fn, spec, has_aux)
    return lambda fn: vmap(grad(lambda theta, *args: fn(unflatten(theta, spec), *args), has_aux=has_aux))


def loss_gradient(model: nn.Module, data, loss: Callable = F.cross_entropy, *, hooks: PatternHooks | None = None,
                  batched: bool = True) -> Callable:
    """The gradient oracle ``theta -> grad_theta loss(model(theta; X), Y)`` of ``data = (X, Y)``.

    ``batched=True``: B tasks, X of shape ``(B, n, ...)``; rows ``(m*B, P)`` of flat
    parameters -> their gradients, row ``i*B + b`` on task b's data (the layout of
    ``fobtheory.estimators``' ``batched=True``), in one ``vmap``-ed call. ``batched=False``:
    one task, X of shape ``(n, ...)``, theta of shape ``(P,)``, plain ``torch.autograd``
    (no ``vmap``: for one task it only costs). No graph outlives a call.

    With ``hooks`` (registered on ``model``) the oracle is anchored: ``oracle(theta,
    anchor=A)``, A of shape (B, P) (or (P,)), evaluates row ``i*B + b`` with the activation
    pattern that task b's data has at ``A[b]``. A plain call at B rows records their
    patterns on the way, kept while those rows are alive (the inner loop's iterates are the
    anchors of the backward pass when they are stored); another anchor costs one forward pass."""
    X, Y = data
    spec = parameter_spec(model)
    gradient = _lift(spec, batched)

    def task_loss(params, x, y):
        return loss(functional_call(model, params, (x,)), y)

    def rows(t, thetas):
        """The data (or patterns) of every row of ``thetas``."""
        return _repeat(t, thetas.shape[0] // X.shape[0]) if batched else t

    per_row = gradient(task_loss)

    def oracle(thetas: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            return per_row(thetas.detach(), rows(X, thetas), rows(Y, thetas))

    if hooks is None or not hooks.modules:
        return oracle

    def record(theta, x):
        with hooks.recording() as patterns:
            functional_call(model, unflatten(theta, spec), (x,))
        return tuple(patterns)

    def recording_loss(params, x, y):
        with hooks.recording() as patterns:
            value = task_loss(params, x, y)
        return value, tuple(patterns)

    def frozen_loss(params, x, y, patterns):
        with hooks.replaying(patterns):
            return task_loss(params, x, y)

    record_rows, per_row_frozen = (vmap(record) if batched else record), gradient(frozen_loss)
    per_row_recording = _lift(spec, batched, has_aux=True)(recording_loss)
    seen = {}  # id of rows met in plain calls -> (weak reference to them, their patterns)

    def anchored(thetas: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        if anchor is None:
            if batched and thetas.shape[0] != X.shape[0]:
                return oracle(thetas)
            with torch.enable_grad():
                g, patterns = per_row_recording(thetas.detach(), X, Y)
            key = id(thetas)
            seen[key] = (weakref.ref(thetas, lambda _, key=key: seen.pop(key, None)), patterns)
            return g
        hit = seen.get(id(anchor))
        if hit is not None and hit[0]() is anchor:
            patterns = hit[1]
        else:
            with torch.no_grad():
                patterns = record_rows(anchor.detach(), X)
        with torch.enable_grad():
            return per_row_frozen(thetas.detach(), rows(X, thetas), rows(Y, thetas),
                                  tuple(rows(p, thetas) for p in patterns))

    return anchored


# ---------------------------------------------------------------------------------------------
# Hessian-vector products


HVP_MODES = ("forward", "reverse")


def loss_hvp(model: nn.Module, data, loss: Callable = F.cross_entropy, *, batched: bool = True,
             mode: str = "forward") -> Callable:
    """The oracle ``(theta, v) -> hess_theta loss(model(theta; X), Y) v`` of ``data = (X, Y)``
    (rows of a batch as in :func:`loss_gradient`). ``mode="forward"``: forward-over-reverse,
    ``jvp`` of ``grad``; ``"reverse"``: reverse-over-reverse, ``vjp`` of ``grad`` (the Hessian
    is symmetric). Both hold one forward's activations and agree to roundoff; forward needs
    forward-mode rules for every op (fused attention kernels have none), reverse does not.
    Measured on a ReLU CNN1D (width 64, depth 6, 16 tasks, float32, 1 thread): 0.57 s and
    0.59 s per call, so forward is the default."""
    if mode not in HVP_MODES:
        raise ValueError(f"hvp must be one of {HVP_MODES}, got {mode!r}")
    X, Y = data
    spec = parameter_spec(model)

    def task_loss(theta, x, y):
        return loss(functional_call(model, unflatten(theta, spec), (x,)), y)

    def product(theta, v, x, y):
        g = lambda t: grad(task_loss)(t, x, y)  # noqa: E731
        return jvp(g, (theta,), (v,))[1] if mode == "forward" else vjp(g, theta)[1](v)[0]

    def double_backward(theta, v, x, y):
        params = _leaves(theta, spec)
        g = torch.autograd.grad(loss(functional_call(model, params, (x,)), y), list(params.values()), create_graph=True)
        return flatten(dict(zip(params, torch.autograd.grad(g, list(params.values()), list(unflatten(v, spec).values())))))

    per_row = vmap(product) if batched else double_backward

    def oracle(thetas: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            return per_row(thetas.detach(), vs.detach(), X, Y).detach()

    return oracle


# ---------------------------------------------------------------------------------------------
# meta-gradients


def _maml(model, supports, queries, alpha, inner_steps, loss, thetas, batched: bool):
    """Second-order MAML: ``grad`` through the K inner ``grad`` steps (torch.func composes
    them into double backward, as ``create_graph=True`` does), ``vmap``-ed over tasks; one
    task by ``torch.autograd`` with ``create_graph=True``."""
    spec = parameter_spec(model)

    def task_loss(params, x, y):
        return loss(functional_call(model, params, (x,)), y)

    def objective(params, xs, ys, xq, yq):
        for _ in range(inner_steps):
            if batched:
                g = grad(task_loss)(params, xs, ys)
            else:
                g = dict(zip(params, torch.autograd.grad(task_loss(params, xs, ys), list(params.values()),
                                                         create_graph=True)))
            params = {n: w - alpha * g[n] for n, w in params.items()}
        return task_loss(params, xq, yq)

    with torch.enable_grad():
        return _lift(spec, batched)(objective)(thetas, *supports, *queries)


def _finite(g, model, supports, queries, thetas, *, batched, alpha, inner_steps, loss, method):
    """``g``, or an error that says where the non-finite values of a meta-gradient come from:
    the inner loop or the query loss (found by running them, first order), or the second-order
    terms themselves."""
    if arrays.is_shape_only(g) or bool(torch.isfinite(g).all()):
        return g
    inner, outer = (loss_gradient(model, data, loss, batched=batched) for data in (supports, queries))
    try:
        estimators.fo_maml(thetas, inner, outer, alpha=alpha, inner_steps=inner_steps, batched=batched)
    except ValueError as error:
        raise ValueError(f"method={method!r} gives a non-finite meta-gradient: {error}; the inner loop diverges "
                         f"at alpha={alpha:g}: reduce alpha or inner_steps") from None
    raise ValueError(f"method={method!r} gives a non-finite meta-gradient although every gradient of the inner loop "
                     "and of the query loss is finite: its second-order terms overflow (reduce alpha, use float64, "
                     "or a first-order method)")


# model -> the kinked functions its forward calls outside the frozen modules
_UNFROZEN: "weakref.WeakKeyDictionary[nn.Module, list[str]]" = weakref.WeakKeyDictionary()
# the options of the FO-B estimators that :func:`meta_gradient_batch` passes on (and maml_hvp's hvp)
OPTIONS = ("normalize", "kink_tol", "store_iterates", "stack_stencil", "freeze_pattern", "kink_check",
           "checkpoint_every", "hvp")
# kink_check's tolerance where plain differences meet a kink: the one-sided differences of a step that
# crosses kinks disagree by O(1) of their mean, those of a smooth piece by O(delta) (roundoff aside);
# experiments/bench_kink_check.py counts both on ReLU networks in float32 at the default delta
KINK_CHECK = 0.1
# the paper's estimator as the experiments measure it: plain differences, nothing counted
PLAIN_DIFFERENCES = {"freeze_pattern": False, "kink_check": None}


def _check_method(method: str, options: dict, alpha, inner_steps):
    if method not in ALL_METHODS:
        raise ValueError(f"method must be one of {ALL_METHODS}, got {method!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}: the options are {list(OPTIONS)}")
    freeze_pattern, kink_check = options.get("freeze_pattern", "auto"), options.get("kink_check", "auto")
    if not (isinstance(freeze_pattern, bool) or freeze_pattern == "auto"):
        raise ValueError(f"freeze_pattern must be True, False or 'auto', got {freeze_pattern!r}")
    if not (kink_check is None or isinstance(kink_check, str) and kink_check == "auto"):
        try:
            positive("kink_check", kink_check)
        except ValueError:
            raise ValueError(f"kink_check must be 'auto', None or a finite number > 0, got {kink_check!r}") from None
    if freeze_pattern is True and not method.startswith("fob_"):
        raise ValueError(f"freeze_pattern=True applies to fob_forward and fob_symmetric only, got method={method!r}: "
                         "it freezes the activation pattern at the points of a finite-difference stencil, and "
                         f"{method} {'differentiates through the pattern already' if method in SECOND_ORDER else 'has no stencil'}")
    if "hvp" in options and method != "maml_hvp":
        raise ValueError(f"hvp selects maml_hvp's Hessian-vector products, got method={method!r}")
    positive("alpha", alpha)
    integer("inner_steps", inner_steps)


# torch's words for an op without the derivative a second-order method needs
_NOT_TWICE = re.compile(r"derivative for (\S+) is not implemented|Double backwards is not supported for ([^.]+)"
                        r"|forward AD with (\S+) that does not support it")


def _second_order(method: str, compute: Callable):
    """``compute()``, with torch's error for an op that has no second derivative (or no
    forward-mode rule, for ``hvp="forward"``) turned into one that names the op and the ways out."""
    try:
        return compute()
    except (RuntimeError, NotImplementedError) as error:
        found = _NOT_TWICE.search(str(error))
        if found is None:
            raise
        op = next(g for g in found.groups() if g)
        forward = found.group(3) is not None
        way = (" or hvp='reverse' (reverse-over-reverse products need no forward-mode rule)"
               if forward and method == "maml_hvp" else "")
        raise ValueError(f"method={method!r} needs {'forward-mode' if forward else 'second'} derivatives of {op}, "
                         f"which torch does not implement (fused attention kernels, cuDNN RNNs and custom kernels "
                         f"often lack them). Use a first-order method, which stays exact: method='fob_symmetric' or "
                         f"'fob_forward' (gradients only){way}") from None


def _meta_gradient(model, supports, queries, thetas, *, batched: bool, method: str, alpha: float, inner_steps: int,
                   delta: float, loss: Callable, normalize: bool = True, kink_tol: float | None = None,
                   store_iterates: bool = True, stack_stencil: bool = True, freeze_pattern: bool = False,
                   kink_check: float | None = None, checkpoint_every: int | None = None, hvp: str = "forward"):
    """``(flat meta-gradients, EstimateInfo or None)`` at ``thetas``: one row per task when
    ``batched``, else one task (see :func:`meta_gradient_batch` for the options, here
    resolved by :func:`_guard`: ``freeze_pattern`` a bool, ``kink_check`` a number or None)."""
    if method == "maml":
        g = _second_order(method, lambda: _maml(model, supports, queries, alpha, inner_steps, loss, thetas,
                                                     batched))
        return _finite(g, model, supports, queries, thetas, batched=batched, alpha=alpha, inner_steps=inner_steps,
                       loss=loss, method=method), None
    if method == "maml_hvp":
        inner, outer = (loss_gradient(model, data, loss, batched=batched) for data in (supports, queries))
        products = loss_hvp(model, supports, loss, batched=batched, mode=hvp)
        return _second_order(method, lambda: estimators.maml_hvp(
            thetas, inner, outer, products, alpha=alpha, inner_steps=inner_steps, store_iterates=store_iterates,
            checkpoint_every=checkpoint_every, batched=batched, return_info=True))
    with PatternHooks(model if freeze_pattern else nn.Module()) as hooks:
        inner = loss_gradient(model, supports, loss, hooks=hooks, batched=batched)
        outer = loss_gradient(model, queries, loss, batched=batched)
        common = dict(alpha=alpha, inner_steps=inner_steps, batched=batched, return_info=True)
        if method == "fo_maml":
            return estimators.fo_maml(thetas, inner, outer, **common)
        if method == "reptile":
            return estimators.reptile(thetas, inner, outer, **common)
        return estimators.fob_maml(thetas, inner, outer, delta=delta, normalize=normalize, kink_tol=kink_tol,
                                   kink_check=kink_check, store_iterates=store_iterates, stack_stencil=stack_stencil,
                                   checkpoint_every=checkpoint_every, scheme=method.removeprefix("fob_"), **common)


@dataclass(frozen=True)
class _Guard:
    """How an FO-B call treats the kinks of its model: ``freeze`` the patterns of its kinked
    modules, count with ``kink_check`` the steps whose one-sided differences disagree;
    ``unfrozen``: the kinked functions its forward calls outside those modules; ``kinks``:
    every kink the plain differences run into (empty where they run on smooth pieces only);
    ``unchecked``: why plain differences on kinks go unchecked (no free check), or ``""``."""

    freeze: bool = False
    kink_check: float | None = None
    unfrozen: tuple[str, ...] = ()
    kinks: tuple[str, ...] = ()
    unchecked: str = ""


def _unfrozen(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The kinked torch functions that ``model``'s forward calls outside the modules
    :class:`fobtheory.patterns.PatternHooks` freezes (one forward pass on ``x``, once per model:
    the forward's code is the model's)."""
    if model not in _UNFROZEN:
        with PatternHooks(model) as hooks:
            _UNFROZEN[model] = hooks.find_unfrozen(lambda: model(x))
    return _UNFROZEN[model]


def _guard(model: nn.Module, x: torch.Tensor, method: str, options: dict) -> _Guard:
    """The FO-B options ``freeze_pattern`` and ``kink_check`` as they run on ``model`` (one
    task's input ``x``): ``"auto"`` freezes where the model has kinked modules, and checks with
    :data:`KINK_CHECK` where plain differences still meet a kink and the check is free: it
    compares gradients the estimator computes anyway, except ``grad f(x_k)`` of ``fob_forward``'s
    missing side and of recomputed iterates (``store_iterates=False``: one gradient call per step)."""
    freeze, check = options.get("freeze_pattern", "auto"), options.get("kink_check", "auto")
    if not method.startswith("fob_") or freeze is False and check is None:
        return _Guard()  # nothing to freeze, check or warn about
    modules, unfrozen = sorted({type(m).__name__ for m in kinked_modules(model)}), tuple(_unfrozen(model, x))
    freeze = bool(modules) if freeze == "auto" else freeze
    kinks = unfrozen if freeze else (*modules, *unfrozen)
    if check != "auto":
        return _Guard(freeze, check, unfrozen, kinks)
    if not kinks:
        return _Guard(freeze, None, unfrozen, kinks)
    if method == "fob_forward":
        why = "its one-sided difference cannot tell a step that crosses one"
    elif not options.get("store_iterates", True) and options.get("checkpoint_every") is None:
        why = (f"with store_iterates=False the check is not free (kink_check={KINK_CHECK:g} checks every step for "
               "one more gradient call each)")
    else:
        return _Guard(freeze, KINK_CHECK, unfrozen, kinks)
    return _Guard(freeze, None, unfrozen, kinks, unchecked=why)


def _warn(guard: _Guard, info, method: str, task_steps: int, shape_only: bool):
    """Warnings for a meta-gradient whose differences met kinks (none on shape-only input,
    which has no values to check)."""
    if guard.freeze and guard.unfrozen:
        warnings.warn(f"freeze_pattern froze the kinks of the model's ReLU-like and max-pooling modules, but the "
                      f"forward also calls {', '.join(guard.unfrozen)} outside them: those kinks are not frozen (use "
                      "nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh, nn.PReLU or nn.MaxPool1d/2d modules)",
                      stacklevel=4)
    if shape_only:
        return
    if info is not None and info.kink_suspects:
        cause = (f"the steps cross kinks ({', '.join(guard.kinks)})" if guard.kinks else
                 "the model has no kinks: roundoff or a large third derivative dominates at this delta")
        warnings.warn(f"{method}: the one-sided differences of {info.kink_suspects} of {task_steps} task-steps "
                      f"disagree by more than kink_check={guard.kink_check:g} of their mean: {cause}, and the "
                      "meta-gradient may be far from MAML's. Freeze the activation patterns (freeze_pattern=True or "
                      "'auto', with the kinks in nn.ReLU-like or max-pooling modules), or use a smaller delta in "
                      "float64; kink_check=None turns this check off", stacklevel=4)
    if guard.unchecked:
        warnings.warn(f"{method} runs plain finite differences on a network with kinks ({', '.join(guard.kinks)}), "
                      f"unchecked: {guard.unchecked}. Its meta-gradient may be far from MAML's: freeze the activation "
                      "patterns (freeze_pattern=True or 'auto', with the kinks in nn.ReLU-like or max-pooling modules), "
                      "or use fob_symmetric with stored iterates, checked for free; kink_check=None silences this "
                      "warning", stacklevel=4)


def _merged(infos: list) -> estimators.EstimateInfo | None:
    """One ``EstimateInfo`` for a batch computed task by task: counts add up, lists join, the
    residual is the largest."""
    if infos[0] is None:
        return None
    merged = estimators.EstimateInfo(fixed_point_residual=max(i.fixed_point_residual for i in infos))
    for info in infos:
        for name in ("inner_grad_calls", "outer_grad_calls", "inner_hvp_calls", "kink_retries", "kink_unresolved",
                     "kink_suspects"):
            setattr(merged, name, getattr(merged, name) + getattr(info, name))
        merged.fixed_point_iters += info.fixed_point_iters
    return merged


def _task_by_task(model, supports, queries, thetas, **kw):
    """``_meta_gradient`` of a batch, one task at a time (for models ``vmap`` cannot take)."""
    rows = [_meta_gradient(model, tuple(t[b] for t in supports), tuple(t[b] for t in queries), thetas[b],
                           batched=False, **kw) for b in range(thetas.shape[0])]
    return torch.stack([g for g, _ in rows]), _merged([info for _, info in rows])


def _guarded(model, supports, queries, thetas, *, batched: bool, by_task: bool, method: str, inner_steps: int,
             options: dict, **kw):
    """``_meta_gradient`` (of a batch ``by_task``: one task at a time) with the kinks of the
    model handled as :func:`_guard` says, and the warnings of :func:`_warn`."""
    with batch_statistics(model):
        guard = _guard(model, supports[0][0] if batched else supports[0], method, options)
        kw = {**kw, **options, "method": method, "inner_steps": inner_steps, "freeze_pattern": guard.freeze,
              "kink_check": guard.kink_check}
        if by_task:
            g, info = _task_by_task(model, supports, queries, thetas, **kw)
        else:
            g, info = _meta_gradient(model, supports, queries, thetas, batched=batched, **kw)
    if info is not None and method.startswith("fob_"):
        info.unfrozen_kinks = list(guard.unfrozen)
    _warn(guard, info, method, inner_steps * (thetas.shape[0] if batched else 1), arrays.is_shape_only(thetas))
    return g, info


def _prepare(model, supports, queries, *, batched, method, options, alpha, inner_steps, loss) -> Probe:
    """Check the call before anything runs; the probe of the model's forward."""
    _check_method(method, options, alpha, inner_steps)
    found = check_data(model, supports, queries, batched=batched, loss=loss)
    if method in SECOND_ORDER:
        require_second_order(found, method)
    return found


def _split(g: torch.Tensor, spec) -> dict[str, torch.Tensor]:
    """Flat gradients (leading task axis or not) as ``{parameter name: gradient}``."""
    lead = g.shape[:-1]
    return {name: view.reshape(*lead, *shape) for (name, shape), view in
            zip(spec, torch.split(g, [shape.numel() for _, shape in spec], dim=-1))}


def _parameters(model: nn.Module) -> torch.Tensor:
    return flatten({n: p.detach() for n, p in model.named_parameters()})


def meta_gradient_batch(model: nn.Module, supports, queries, *, method: str, alpha: float, inner_steps: int = 1,
                        delta: float = 1e-3, loss: Callable = F.cross_entropy, return_info: bool = False,
                        **options):
    """Meta-gradients of B tasks at once.

    ``supports = (X, Y)`` with X of shape (B, n, ...), likewise ``queries``. ``method`` is one
    of :data:`ALL_METHODS`: ``maml`` (second order, differentiating through the inner loop),
    ``maml_hvp`` (the same, exact, by a backward recursion of Hessian-vector products; option
    ``hvp="forward"`` or ``"reverse"``, see :func:`loss_hvp`), ``fo_maml``, ``reptile``,
    ``fob_forward``, ``fob_symmetric`` (gradients only, by
    :func:`fobtheory.estimators.fob_maml` on the flat parameters). ``delta`` (FO-B) is the
    norm of the parameter displacement: the default 1e-3 reaches the float32 floor measured on
    CNN1D and on Conv4 with BatchNorm (1e-3 to 1e-2 give the same worst task there; use about
    1e-5 in float64). FO-B ``options``:
    ``normalize=True`` (the parameter displacement has norm delta), the kink guard
    ``kink_tol``, ``store_iterates`` (``False``: recompute the inner iterates, memory flat
    in K), ``checkpoint_every=c`` (keep every c-th iterate, recompute the others from it),
    ``stack_stencil`` (``False``: one oracle call per stencil point, the peak memory of a
    single gradient, slower), ``freeze_pattern`` and ``kink_check``. ``maml_hvp`` takes
    ``store_iterates`` and ``checkpoint_every`` too.

    Kinks (ReLU, max-pooling, ...). A finite difference whose step crosses an activation
    kink compares two smooth pieces and can be off by orders of magnitude (in float32 at the
    default delta, nearly every step of a ReLU network crosses one), while MAML
    differentiates the piece the point is on. ``freeze_pattern="auto"`` (the default) and
    ``True`` evaluate the stencil gradients around ``x_k`` with the activation pattern of
    ``x_k`` for the kinked modules of :mod:`fobtheory.patterns` (ReLU, LeakyReLU, ReLU6,
    Hardtanh, PReLU, MaxPool1d/2d, each module as often as the forward calls it): the finite
    difference of the smooth piece that autograd differentiates, O(delta^2) even where a
    step would cross a kink. ``"auto"`` freezes where the model has such modules (on a
    smooth model it is the plain difference, to the bit) and is ignored by the other
    methods; ``True`` refuses them. The patterns of the inner loop's iterates are recorded
    during their gradient calls and kept while the iterates are (one byte per activation for
    ReLU: with ``store_iterates`` K such sets; otherwise one forward pass per backward step
    records the anchor's, and memory stays flat in K). Kinks it cannot freeze (``F.relu`` in
    a forward, ``torch.abs``, ``x.clamp()``, ...) are named in ``info.unfrozen_kinks``, with
    a warning. ``freeze_pattern=False`` is the paper's plain estimator.

    ``kink_check=c`` counts in ``info.kink_suspects`` the task-steps of ``fob_symmetric``
    whose one-sided differences disagree by more than the fraction c of their mean (see
    ``fobtheory.estimators.fob_maml``; no gradient call, it keeps ``grad f(x_k)``: K more
    parameter vectors with stored iterates), and warns when there are any. The default
    ``"auto"`` checks with :data:`KINK_CHECK` wherever plain differences meet a kink (a
    kinked model with ``freeze_pattern=False``, or kinks no module holds) and the check is
    free, and warns there otherwise that they run unchecked: ``fob_forward`` has no second
    side to compare, and with ``store_iterates=False`` each ``grad f(x_k)`` would cost a
    gradient call. ``None`` checks nothing and stays silent (:data:`PLAIN_DIFFERENCES` is the
    paper's estimator, unchecked).

    The model as users write it (:mod:`fobtheory.model_checks`): BatchNorm in training mode
    normalises with the batch statistics of the set at hand (the support set in the inner
    loop, the query set in the outer loss, as MAML does) and its running buffers are never
    written: a meta-gradient is a measurement, and the same call twice gives the same answer
    on the same model (update running statistics, if you evaluate in eval mode, with a plain
    forward of your choice); in eval mode the running statistics are used. Custom
    ``autograd.Function`` s without ``setup_context`` run task by task (a warning names them);
    second-order methods raise for a Function with a ``@once_differentiable`` backward, whose
    second derivatives autograd would drop. Data, labels, shapes and dtypes are checked
    against the model first, and a meta-gradient is never returned with NaN or inf entries.

    Returns ``{parameter name: (B, *shape) tensor}``, row b the meta-gradient of task b,
    and with ``return_info`` the estimator's ``EstimateInfo`` (``None`` for maml).
    """
    found = _prepare(model, supports, queries, batched=True, method=method, options=options, alpha=alpha,
                     inner_steps=inner_steps, loss=loss)
    supports, queries = tuple(supports), tuple(queries)
    if found.classic_functions:
        warnings.warn(f"{', '.join(found.classic_functions)} (custom autograd.Function without setup_context) "
                      "cannot run under torch.func.vmap: the tasks run one at a time. Give it a setup_context "
                      "staticmethod and generate_vmap_rule = True to batch them", stacklevel=2)
    g, info = _guarded(model, supports, queries, _parameters(model).expand(supports[0].shape[0], -1), batched=True,
                       by_task=bool(found.classic_functions), method=method, alpha=alpha, inner_steps=inner_steps,
                       delta=delta, loss=loss, options=options)
    out = _split(g, parameter_spec(model))
    return (out, info) if return_info else out


def meta_gradient(model: nn.Module, support, query, *, method: str, alpha: float, inner_steps: int = 1,
                  delta: float = 1e-3, loss: Callable = F.cross_entropy, return_info: bool = False, **options):
    """The meta-gradient of ``loss(model(phi^K(theta); x_query), y_query)`` for one task.

    ``support`` and ``query`` are ``(x, y)`` pairs. Methods, ``options`` and the handling of
    BatchNorm, custom Functions and bad input are those of :func:`meta_gradient_batch`; one
    task runs without ``vmap``, as fast as a plain autograd loop. Returns ``{parameter name:
    gradient}`` (and the ``EstimateInfo``, ``None`` for maml, with ``return_info``).
    """
    _prepare(model, support, query, batched=False, method=method, options=options, alpha=alpha,
             inner_steps=inner_steps, loss=loss)
    g, info = _guarded(model, tuple(support), tuple(query), _parameters(model), batched=False, by_task=False,
                       method=method, alpha=alpha, inner_steps=inner_steps, delta=delta, loss=loss, options=options)
    grads = _split(g, parameter_spec(model))
    return (grads, info) if return_info else grads


def adapted_accuracy(model: nn.Module, supports, queries, *, alpha: float, inner_steps: int = 1,
                     loss: Callable = F.cross_entropy) -> torch.Tensor:
    """Query accuracy of each of B tasks after K inner gradient steps on its support set
    (``supports``, ``queries`` batched as in :func:`meta_gradient_batch`, BatchNorm and custom
    Functions likewise); shape (B,)."""
    found = check_data(model, supports, queries, batched=True, loss=loss)
    alpha, inner_steps = positive("alpha", alpha), integer("inner_steps", inner_steps)
    spec = parameter_spec(model)

    def accuracy(support, query, batched: bool):
        inner = loss_gradient(model, support, loss, batched=batched)
        theta = _parameters(model).expand(support[0].shape[0], -1) if batched else _parameters(model)
        for _ in range(inner_steps):
            theta = theta - alpha * inner(theta)
        forward = lambda th, x: functional_call(model, unflatten(th, spec), (x,))  # noqa: E731
        with torch.no_grad():
            logits = (vmap(forward) if batched else forward)(theta, query[0])
        return (logits.argmax(-1) == query[1]).to(torch.float64).mean(-1)

    with batch_statistics(model):
        if not found.classic_functions:
            return accuracy(supports, queries, batched=True)
        return torch.stack([accuracy(tuple(t[b] for t in supports), tuple(t[b] for t in queries), batched=False)
                            for b in range(supports[0].shape[0])])
