"""Few-shot data: MNIST-1D from the ``mnist1d`` package's procedural generator, procedural
stroke images (:func:`stroke_images`), and N-way K-shot episodes from any ``(x, y)`` arrays.

The data set is generated offline by ``mnist1d.data.make_dataset`` (never downloaded) and
cached under ``$XDG_CACHE_HOME/fobtheory`` (default ``~/.cache/fobtheory``) with a key
that holds the generator arguments and the package versions, so a changed argument or
generator never serves stale data.

An episode draws ``ways`` classes, relabels them by a random permutation to ``0..ways-1``,
and takes ``shots`` support and ``queries`` query examples per class, without overlap; the
examples may be signals ``(n, length)`` or ``(n, channels, length)``, or images
``(n, channels, height, width)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch

from .checks import integer

CACHE_VERSION = 1


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "fobtheory"


def source_hash(folders, versions: dict) -> str:
    """16 hex of the sha256 of every ``*.py`` file under ``folders`` (relative path and
    bytes, in sorted order) and of ``versions``."""
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode())
    for folder in map(Path, folders):
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def code_version() -> str:
    """What, besides its configuration, determines a result computed here: the source of the
    ``fobtheory`` package and of its experiments, and the numpy, torch and mnist1d versions
    (:func:`source_hash`). Results kept in the cache are keyed by it too, so that a result
    computed by other code is never reused."""
    import mnist1d

    folders = [Path(find_spec(name).origin).parent for name in ("fobtheory", "fobtheory.experiments")]
    return source_hash(folders, {"numpy": np.__version__, "torch": torch.__version__,
                                 "mnist1d": getattr(mnist1d, "__version__", "?")})


def dataset_args(**overrides) -> dict:
    """mnist1d's default generator arguments with ``overrides`` applied (names checked)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    unknown = set(overrides) - set(args)
    if unknown:
        raise ValueError(f"unknown mnist1d argument(s) {sorted(unknown)}; valid: {sorted(args)}")
    args.update(overrides)
    args.pop("url", None)  # the download address plays no part in generation
    return args


def _cache_key(args: dict) -> str:
    import mnist1d

    payload = json.dumps({"args": args, "mnist1d": getattr(mnist1d, "__version__", "?"),
                          "numpy": np.__version__.split(".")[0], "v": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def generate(args: dict) -> dict[str, np.ndarray]:
    """``mnist1d.data.make_dataset`` on ``args``, leaving the global random state as it was
    (the generator reseeds numpy's and Python's global generators)."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def load_mnist1d(cache: bool = True, validation_fraction: float = 0.0, validation_seed: int = 0,
                 **overrides) -> dict[str, np.ndarray]:
    """MNIST-1D arrays ``x, y`` (train split) and ``x_test, y_test``; float32 signals of
    length ``final_seq_length`` (40 by default) and int64 labels 0..9.

    With ``validation_fraction`` f in [0, 1), a seeded hold-out of the train split is
    returned as ``x_val, y_val`` and removed from ``x, y``: of each class's n_c examples,
    round(f * n_c) chosen by ``numpy.random.default_rng(validation_seed)`` (stratified, so
    every class keeps its share). The split does not depend on the cache; f = 0 gives
    empty ``x_val, y_val`` and the generator's train split unchanged.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    args = dataset_args(**overrides)
    path = cache_dir() / f"mnist1d-{_cache_key(args)}.npz"
    if cache and path.exists():
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    else:
        data = generate(args)
        data = {"x": data["x"].astype(np.float32), "y": data["y"].astype(np.int64),
                "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64)}
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **data)
            os.replace(tmp, path)
    return _hold_out(data, validation_fraction, validation_seed)


def _hold_out(data: dict, fraction: float, seed: int) -> dict:
    """``data`` with ``x_val, y_val``: round(fraction * n_c) seeded examples of each class c
    of the train split, removed from ``x, y`` (the rest keep their order)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(data["y"]), dtype=bool)
    for c in np.unique(data["y"]):
        idx = np.flatnonzero(data["y"] == c)
        held[rng.permutation(idx)[: int(round(fraction * len(idx)))]] = True
    return dict(data, x=data["x"][~held], y=data["y"][~held], x_val=data["x"][held], y_val=data["y"][held])


def stroke_images(n_classes: int = 20, per_class: int = 40, *, size: int = 28, channels: int = 1,
                  strokes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A procedural few-shot image set (no download): ``x`` float32 of shape
    ``(n_classes * per_class, channels, size, size)``, ``y`` int64 class labels.

    Class c is ``strokes`` line segments with random end points in the central 60% of the
    image and a random colour each (one channel: intensity 1). An example of c moves every
    end point by N(0, (0.04 size)^2) and the whole drawing by N(0, (0.06 size)^2), renders
    pixel p as ``max_s colour_s * exp(-d(p, segment_s)^2 / (2 w^2))`` with w = size / 28
    pixels, and adds N(0, 0.1^2) noise: Omniglot-like characters, seeded by ``seed``.
    """
    n_classes, per_class, size, channels, strokes = (
        integer("n_classes", n_classes), integer("per_class", per_class), integer("size", size),
        integer("channels", channels), integer("strokes", strokes))
    rng = np.random.default_rng(seed)
    ends = rng.uniform(0.2, 0.8, (n_classes, 1, strokes, 2, 2)) * size  # class, -, stroke, end, (row, col)
    colours = rng.uniform(0.3, 1.0, (n_classes, strokes, channels)) if channels > 1 else \
        np.ones((n_classes, strokes, 1))
    ends = (ends + rng.normal(0, 0.04 * size, (n_classes, per_class, strokes, 2, 2))
            + rng.normal(0, 0.06 * size, (n_classes, per_class, 1, 1, 2))).reshape(-1, strokes, 2, 2)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), -1).reshape(-1, 2) + 0.5
    a, b = ends[:, :, None, 0], ends[:, :, None, 1]  # (n, stroke, 1, 2)
    ab = b - a
    t = np.clip(((grid - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)[..., None]
    d2 = ((grid - a - t * ab) ** 2).sum(-1)  # squared distance of every pixel to every segment
    ink = np.exp(-d2 / (2 * (size / 28) ** 2))[..., None] * np.repeat(colours, per_class, 0)[:, :, None]
    x = ink.max(1).transpose(0, 2, 1).reshape(-1, channels, size, size)
    x = x + rng.normal(0, 0.1, x.shape)
    return x.astype(np.float32), np.repeat(np.arange(n_classes), per_class).astype(np.int64)


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: ``support = (x, y)`` and ``query = (x, y)``, x of shape
    (n, channels, ...) (signals (n, 1, length)), labels in 0..ways-1; ``classes[i]`` is the
    original class of label i."""

    support: tuple[torch.Tensor, torch.Tensor]
    query: tuple[torch.Tensor, torch.Tensor]
    classes: tuple[int, ...]


class EpisodeSampler:
    """Seeded N-way K-shot episodes from one split, optionally restricted to ``classes``.

    ``x``: signals ``(n, length)`` (given a channel axis: ``(n, 1, length)``), or examples
    with their channel axis, ``(n, channels, length)`` or images ``(n, channels, height,
    width)``; ``y``: ``(n,)`` integer class labels."""

    def __init__(self, x, y, *, ways: int = 5, shots: int = 5, queries: int = 15, classes=None, seed: int = 0,
                 dtype=torch.float32, device="cpu"):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 2:
            raise ValueError(f"x must be (n, length), (n, channels, length) or (n, channels, height, width), "
                             f"got shape {x.shape}")
        if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must hold one integer label per example of x, shape ({x.shape[0]},), got "
                             f"{y.dtype} of shape {y.shape}")
        ways, shots, queries = integer("ways", ways), integer("shots", shots), integer("queries", queries)
        self.classes = sorted(set(y.tolist())) if classes is None else sorted(set(classes))
        if len(self.classes) < ways:
            raise ValueError(f"ways={ways} needs at least {ways} classes, the split offers {self.classes}")
        self.by_class = {c: np.flatnonzero(y == c) for c in self.classes}
        short = {c: len(i) for c, i in self.by_class.items() if len(i) < shots + queries}
        if short:
            raise ValueError(f"shots + queries = {shots + queries} exceeds the examples of classes {short}")
        self.x = torch.as_tensor(x, dtype=dtype, device=device)
        if x.ndim == 2:
            self.x = self.x.unsqueeze(1)
        self.ways, self.shots, self.queries = ways, shots, queries
        self.rng = np.random.default_rng(seed)
        self.device = device

    def sample(self) -> Episode:
        classes = self.rng.choice(self.classes, size=self.ways, replace=False)  # random order = label permutation
        support, query = [], []
        for c in classes:
            picked = self.rng.choice(self.by_class[int(c)], size=self.shots + self.queries, replace=False)
            support.append(picked[: self.shots])
            query.append(picked[self.shots:])
        labels = lambda n: torch.arange(self.ways, device=self.device).repeat_interleave(n)  # noqa: E731
        s, q = np.concatenate(support), np.concatenate(query)
        return Episode((self.x[s], labels(self.shots)), (self.x[q], labels(self.queries)),
                       tuple(int(c) for c in classes))

    def batch(self, n: int) -> list[Episode]:
        return [self.sample() for _ in range(n)]
