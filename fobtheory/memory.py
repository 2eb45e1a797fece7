"""A deterministic peak-memory meter: bytes of live tensor storages, followed from inside torch.

:class:`PeakMemory` is a ``TorchDispatchMode``: every tensor that an operation reads or
writes while it is active has its storage counted once (views share a storage) until the
storage is freed, which a weak reference reports. Its ``peak`` is the largest sum of live
storage bytes seen: parameters, inputs, activations, tensors saved for backward, gradients.

It counts bytes requested by tensors, not the allocator's caching or the process's RSS, so
the same computation gives the same reading on every run. Python's cyclic garbage
collector is paused while the meter runs, so that storages die exactly when their last
reference goes (or never, if a reference cycle holds them: then they count, every time). Tensors that exist before the meter starts count from their first use
inside it, or from the start if passed to the constructor.

On CUDA, :func:`measure` also reports ``torch.cuda.max_memory_allocated`` (which includes
the caching allocator's 512-byte rounding).

Storages on torch's ``meta`` device (shapes without values) count like any other: the same
program run on shape-only tensors gives the same reading without arithmetic, which
:func:`peak_bytes` uses to measure configurations far beyond this machine's memory.
"""
from __future__ import annotations

import copy
import gc
import time
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode


class PeakMemory(TorchDispatchMode):
    """``with PeakMemory(*already_alive) as meter: ...`` then ``meter.peak`` (bytes)."""

    def __init__(self, *alive: torch.Tensor, device: str | torch.device | None = None):
        super().__init__()
        self.device = torch.device(device).type if device is not None else None
        self.live: dict[int, tuple[int, weakref.ref]] = {}
        self.current = 0
        self.peak = 0
        self._alive = alive

    def __enter__(self):
        self._gc = gc.isenabled()
        gc.disable()
        for t in self._alive:
            self._track(t)
        return super().__enter__()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        if self._gc:
            gc.enable()
        return out

    def _track(self, t):
        if not isinstance(t, torch.Tensor):
            return
        if self.device is not None and t.device.type != self.device:
            return
        storage = t.untyped_storage()
        key = id(storage)
        if key in self.live:
            return
        size = storage.nbytes()
        self.live[key] = (size, weakref.ref(storage, lambda _, key=key: self._free(key)))
        self.current += size
        self.peak = max(self.peak, self.current)

    def _free(self, key):
        size, _ = self.live.pop(key, (0, None))
        self.current -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._track_all(args)
        self._track_all(kwargs.values())
        out = func(*args, **kwargs)
        self._track_all((out,))
        return out

    def _track_all(self, values):
        """Track the tensors among ``values`` and inside their lists and tuples (the only
        containers of tensors in an aten call's arguments and results)."""
        for v in values:
            if isinstance(v, torch.Tensor):
                self._track(v)
            elif isinstance(v, (list, tuple)):
                self._track_all(v)


@dataclass(frozen=True)
class Measurement:
    peak_bytes: int  # live tensor storages (PeakMemory)
    cuda_max_allocated: int | None  # torch.cuda.max_memory_allocated, on CUDA only
    seconds: float  # wall time of the metered call (slowed by the meter: not a timing)


def measure(fn, *alive: torch.Tensor, device: str = "cpu") -> Measurement:
    """Peak live-tensor bytes of ``fn()`` (the result is dropped before returning)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    with PeakMemory(*alive, device=device) as meter:
        result = fn()
        if cuda:
            torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    del result
    cuda_peak = torch.cuda.max_memory_allocated(device) - base if cuda else None
    return Measurement(meter.peak, cuda_peak, seconds)


def wall_time(fn, device: str = "cpu") -> float:
    """Seconds of one call of ``fn()``; on CUDA the queued kernels are waited for at both ends."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def peak_bytes(model, supports, queries, *, method: str, alpha: float, inner_steps: int = 1,
               device: str = "meta", **options) -> int:
    """The meter's peak (bytes) for one :func:`fobtheory.nn.meta_gradient_batch` call with
    the model and the data on ``device``; ``options`` go to it (``delta``, ``store_iterates``,
    ``stack_stencil``, ``kink_tol``, ...). Parameters and data count from the start.

    ``device="meta"`` is shape-only: no arithmetic, so any size runs in seconds, and the
    reading equals the CPU meter's wherever the program does not branch on values. FO-B's
    value-dependent branches take their costliest side there (see
    ``fobtheory.estimators._Oracles``): with ``kink_tol`` every step retries three times (the
    guard's worst case, an upper bound; equal to the CPU peak once a retry happens), with
    ``fixed_point_iters="solve"`` every solve runs ``max_fixed_point_iters`` iterations (the
    peak does not grow after the second). A model on another device is copied, not moved.
    On a real device one call runs first, unmetered, as in the memory experiment: first-call
    caches are not the method's memory.
    """
    from .model_checks import check_data
    from .nn import meta_gradient_batch

    device = torch.device(device)
    if any(p.device != device for p in model.parameters()):
        model = copy.deepcopy(model).to(device)
    supports, queries = (tuple(t.to(device) for t in pair) for pair in (supports, queries))

    def call():
        return meta_gradient_batch(model, supports, queries, method=method, alpha=alpha, inner_steps=inner_steps,
                                   **options)

    if device.type != "meta":
        call()
    else:  # the model's probe (fobtheory.model_checks) runs once per model and shape, not in the measured call
        check_data(model, supports, queries, batched=True, loss=options.get("loss", F.cross_entropy))
    return measure(call, *model.parameters(), *supports, *queries, device=str(device)).peak_bytes
