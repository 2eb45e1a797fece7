"""What a model and its data must satisfy before a meta-gradient's transforms run.

A meta-gradient calls the model's forward many times, at perturbed parameters, under
``torch.func`` transforms (``vmap``, ``grad``, ``jvp``). Three kinds of model code do not
survive that, and are found here by one probe forward per model and input shape
(:func:`probe`), before any transform runs:

- **module state written in the forward.** BatchNorm in training mode updates its running
  buffers in place. A meta-gradient is a measurement: calling it twice must give the same
  answer and leave the model as it was, so :func:`batch_statistics` makes every BatchNorm
  normalise with the statistics of the batch at hand (the support set in the inner loop, the
  query set in the outer loss, as MAML's reference code and torch.func's MAML example do) and
  leaves its buffers alone; in eval mode the running statistics are used, unchanged. Any
  other module that writes a buffer in its forward is named in an error.
- **custom ``torch.autograd.Function`` s written the classic way** (``forward(ctx, ...)``,
  no ``setup_context``): functorch cannot ``vmap`` them. The batched path then loops over
  the tasks (see :func:`fobtheory.nn.meta_gradient_batch`), with a warning that names them.
- **Functions without second derivatives** (a ``@once_differentiable`` backward, as custom
  CUDA and Triton kernels usually have): autograd drops their second-order terms, silently
  unless an incoming gradient happens to require grad. Second-order methods raise and name
  them; the first-order methods, which only call gradients, stay exact.

:func:`check_data` checks the ``(x, y)`` pairs against the model (dtype, device, shapes,
finiteness, class labels) so that bad input fails with an error naming the argument, not in
a traceback from inside ``vmap``.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

_ONCE_DIFFERENTIABLE = once_differentiable(lambda ctx: None).__code__  # the code of every such wrapper


@contextmanager
def batch_statistics(model: nn.Module):
    """Within the block, BatchNorm modules in training mode use the statistics of the batch at
    hand and write nothing to their running buffers (those in eval mode use the running
    statistics, as always)."""
    switched = [m for m in model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    for m in switched:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in switched:
            m.track_running_stats = True


@dataclass(frozen=True)
class Probe:
    """What one forward of the model at its parameters showed."""

    output_shape: tuple | None  # of the probe's batch of n samples (None: the forward returns no tensor)
    classic_functions: tuple[str, ...]  # custom Functions functorch cannot transform (no setup_context)
    once_differentiable: tuple[str, ...]  # custom Functions with a once-differentiable backward


def _graph_functions(output: torch.Tensor) -> list[type]:
    """The custom ``autograd.Function`` classes in ``output``'s autograd graph."""
    found, seen, stack = [], set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        cls = getattr(node, "_forward_cls", None)
        if cls is not None and cls not in found:
            found.append(cls)
        stack.extend(f for f, _ in node.next_functions)
    return found


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_PROBES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def probe(model: nn.Module, x: torch.Tensor, argument: str) -> Probe:
    """One forward of ``model`` on ``x`` (one task's inputs) with gradients on, cached per
    model structure, input shape and dtype. Raises ``ValueError`` when ``x`` does not fit the
    model (naming ``argument``) or when a module writes module state in its forward."""
    key = (tuple(x.shape), x.dtype, x.device.type, tuple(map(id, model.modules())))
    cache = _PROBES.setdefault(model, {})
    if key in cache:
        return cache[key]
    buffers = {name: (b._version, b.detach().clone()) for name, b in model.named_buffers()}
    try:
        with torch.enable_grad(), batch_statistics(model):
            out = model(x)
    except RuntimeError as error:
        raise ValueError(f"{argument} of shape {tuple(x.shape)} (one task's inputs) does not fit the model: "
                         f"{error}") from None
    written = [name for name, b in model.named_buffers() if name in buffers and b._version != buffers[name][0]]
    if written:
        with torch.no_grad():  # the probe leaves the model as it found it
            for name, b in model.named_buffers():
                if name in written:
                    b.copy_(buffers[name][1])
        owners = {name.rpartition(".")[0] or "<model>" for name in written}
        modules = dict(model.named_modules())
        raise ValueError(
            f"module(s) {', '.join(f'{o} ({type(modules.get(o, model)).__name__})' for o in sorted(owners))} write "
            f"their buffers {written} in the forward: a meta-gradient runs the forward many times at perturbed "
            "parameters, under torch.func transforms that cannot mutate captured tensors, and must leave the model "
            "unchanged. Write the state outside the forward, or only when a flag you set is on")
    functions = _graph_functions(out) if isinstance(out, torch.Tensor) and out.grad_fn is not None else []
    result = Probe(
        output_shape=tuple(out.shape) if isinstance(out, torch.Tensor) else None,
        classic_functions=tuple(_name(c) for c in functions
                                if c.setup_context is torch.autograd.Function.setup_context),
        once_differentiable=tuple(_name(c) for c in functions
                                  if getattr(c.backward, "__code__", None) is _ONCE_DIFFERENTIABLE),
    )
    cache[key] = result
    return result


def require_second_order(found: Probe, method: str) -> None:
    """Raise when ``method`` (second order) would differentiate a backward that has no
    derivative of its own."""
    if found.once_differentiable:
        raise ValueError(
            f"method={method!r} differentiates the model's backward, but {', '.join(found.once_differentiable)} "
            "has a @once_differentiable backward: autograd would drop its second-order terms and return a wrong "
            "meta-gradient. Use a first-order method that stays exact here, method='fob_symmetric' or "
            "'fob_forward' (gradients only), or give the Function a differentiable backward")


def _pair(name: str, pair) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(t, torch.Tensor) for t in pair)):
        raise ValueError(f"{name} must be an (x, y) pair of tensors, got {type(pair).__name__}")
    return tuple(pair)


def check_data(model: nn.Module, supports, queries, *, batched: bool, loss: Callable) -> Probe:
    """Check ``supports`` and ``queries`` (``(x, y)`` pairs; a leading task axis when
    ``batched``) against ``model`` and return the model's :class:`Probe`. Errors name the
    argument and what was expected: dtype and device of the parameters, equal task and sample
    counts, finite values, and with ``F.cross_entropy`` integer labels below the number of
    classes the model outputs."""
    names = ("supports", "queries") if batched else ("support", "query")
    pairs = [_pair(n, p) for n, p in zip(names, (supports, queries))]
    parameter = next(model.parameters(), None)
    lead = 2 if batched else 1
    for name, (x, y) in zip(names, pairs):
        if parameter is not None and (x.dtype != parameter.dtype or x.device != parameter.device):
            raise ValueError(f"{name}[0] has dtype {x.dtype} on {x.device}, the model's parameters "
                             f"{parameter.dtype} on {parameter.device}: convert one of them (x.to(...) or model.to(...))")
        if x.ndim < lead + 1 or y.ndim < lead or tuple(x.shape[:lead]) != tuple(y.shape[:lead]):
            axes = "(tasks, samples" if batched else "(samples"
            raise ValueError(f"{name} must be x of shape {axes}, ...) with labels y of shape {axes}, ...), got x "
                             f"{tuple(x.shape)} and y {tuple(y.shape)}")
        for part, t in (("[0]", x), ("[1]", y)):
            if t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}{part} has NaN or infinite entries")
    if batched and pairs[0][0].shape[0] != pairs[1][0].shape[0]:
        raise ValueError(f"supports and queries must hold the same number of tasks, got "
                         f"{pairs[0][0].shape[0]} and {pairs[1][0].shape[0]}")
    found = probe(model, pairs[0][0][0] if batched else pairs[0][0], f"{names[0]}[0]")
    for name, (x, y) in zip(names, pairs):
        if x.shape[lead:] != pairs[0][0].shape[lead:]:
            probe(model, x[0] if batched else x, f"{name}[0]")
        if loss is F.cross_entropy and found.output_shape:
            classes = found.output_shape[-1]
            if y.is_floating_point() or y.dtype == torch.bool:
                raise ValueError(f"{name}[1] must hold integer class labels for cross_entropy, got dtype {y.dtype}")
            if y.device.type != "meta" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
                raise ValueError(f"{name}[1] holds labels in [{int(y.min())}, {int(y.max())}], the model outputs "
                                 f"{classes} classes: labels must lie in [0, {classes - 1}]")
    return found
