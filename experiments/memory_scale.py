"""Memory at scale from shapes alone: where each method runs out of an 80 GB and a 141 GB
card, and a memory budget for FO-B's iterates (``checkpoint_every``).

:func:`fobtheory.memory.peak_bytes` on torch's ``meta`` device runs the meta-gradient on
shape-only tensors: the meter's peak without arithmetic, so a width-1024, depth-12 network
with K = 50 and 64 tasks is measured in seconds. Three parts, one results file:

1. **validation**: meta peak against the CPU meter (both by ``peak_bytes``, measured here:
   the program may have changed since the committed CPU run) for every variant on the grid
   of the CPU memory run (``experiments/memory.py``: both settings, every K) up to width 64
   (the CPU side of widths 128 and 250 would take most of an hour), to the byte.
2. **frontier**: for each variant and card, the largest width (a multiple of 32, up to 1024)
   whose predicted CUDA bytes, ``margin x`` meta peak, fit the card: along K at the heaviest
   depth, meta-batch and signal length, and over depth, meta-batch and length at one K.
   The margin of a method is the largest ``(cuda_max_allocated + parameters + data) / CPU
   peak`` over the H100 run's records (``figures/cuda/memory.json``) whose CPU peak is at
   least ``margin_floor_mib`` (below, a fixed workspace of up to 14 MB dominates the ratio).
   The search bisects the width (the peak grows with it), probing first the answer of a
   smaller configuration (the peak grows with K, depth, meta-batch and length too), so the
   frontier width is always measured to fit; the summary counts violations of that
   monotonicity among all measured points. Cards are nominal decimal GB (80e9, 141e9
   bytes), below the ~78 GiB and ~139 GiB that torch reports usable: the gap is left to
   the CUDA context and the allocator's fragmentation.
3. **checkpoints**: ``checkpoint_every = c`` in the heavy setting of the memory run at
   width 250, K 10 and 50: peak (meta), gradient calls (``EstimateInfo``) and, at the timed
   K, the median CPU time of interleaved repeats, against FO-MAML's peak and the lean
   variant's time. At the untimed K, ``predicted_seconds`` = calls x the lean variant's
   seconds per call at the timed K (a prediction, not a measurement).

Signal lengths: mnist1d's ``final_seq_length`` (40 by default) and ``template_len +
padding[1]`` (72), the length of its signals before they are subsampled.

4. **Conv4** (``network="conv4"``, :class:`fobtheory.models.Conv4` with BatchNorm, 84 x 84 x 3,
   miniImageNet's size): the peak of every method of ``fobtheory.nn.ALL_METHODS`` and of the
   storage variants (lean, checkpointed) at width 64 along K, the largest width that fits
   each card along K (the frontier search above, with the network as one more axis), and a
   validation against the CPU meter at a small Conv4. :func:`update_conv4` reruns this part
   alone and folds it into an existing results file.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from fobtheory import plotting
from fobtheory.experiments.memory import LEAN, VARIANTS as MEMORY_VARIANTS
from fobtheory.experiments.memory import config as memory_config
from fobtheory.memory import measure, peak_bytes, wall_time
from fobtheory.models import Conv4
from fobtheory.nn import ALL_METHODS, CNN1D, PLAIN_DIFFERENCES, meta_gradient_batch
from fobtheory.progress import track
from fobtheory.results import claim, environment, load_results, make_results, save_figure, verdict

NAME = "memory_scale"
GB, MIB = 10**9, 2**20
# label -> (method, options): every method, and the storage variants; the *_ckpt variants add
# checkpoint_every = ceil(sqrt(K))
VARIANTS = {**{m: (m, {}) for m in ALL_METHODS}, **MEMORY_VARIANTS,
            "fob_symmetric_ckpt": ("fob_symmetric", dict(stack_stencil=False)),
            "maml_hvp_ckpt": ("maml_hvp", {})}
ORDER = ["maml", "fo_maml", "reptile", "fob_forward", "fob_symmetric", "fob_symmetric_lean", "fob_symmetric_ckpt",
         "maml_hvp", "maml_hvp_lean", "maml_hvp_ckpt"]
# the storage options of FO-B symmetric and HVP-MAML, compared at equal option in the checkpoint part
STORAGE = {"fob_symmetric": {"stored": {}, "lean": LEAN, "ckpt": dict(stack_stencil=False)},
           "maml_hvp": {"stored": {}, "lean": dict(store_iterates=False), "ckpt": {}}}


def mnist1d_lengths() -> list[int]:
    """mnist1d's default ``final_seq_length`` and the length before subsampling."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    return [args["final_seq_length"], args["template_len"] + args["padding"][1]]


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    short, long = mnist1d_lengths()
    mem = memory_config(quick=quick)
    validation = dict(settings=mem["settings"], widths=[w for w in mem["widths"] if w <= (16 if quick else 64)],
                      inner_steps=mem["inner_steps"], **{k: mem[k] for k in ("ways", "length", "alpha", "delta")})
    cfg = dict(
        ways=5, shots=5, queries=15, alpha=0.4, delta=1e-3, variants=list(ORDER),
        cards={"80 GB": 80 * GB, "141 GB": 141 * GB}, widths=list(range(32, 1025, 32)),
        along_K=dict(depth=12, meta_batch=64, length=long, inner_steps=[1, 5, 10, 20, 50]),
        across=dict(inner_steps=10, depths=[3, 6, 12], meta_batches=[16, 64], lengths=[short, long]),
        cpu_reference="figures/memory.json", cuda_reference="figures/cuda/memory.json",
        validation=validation, margin_floor_mib=100, default_margin=1.15,
        checkpoints=dict(width=250, depth=6, meta_batch=16, length=short, inner_steps=[10, 50],
                         every={"10": [1, 2, 3, 4, 5, 7, 10], "50": [1, 2, 3, 5, 7, 10, 17, 25, 50]},
                         timed_inner_steps=10, timed_every=[2, 5], repeats=3, peak_limit=1.5, time_limit=0.7),
        conv4=dict(size=84, channels=3, width=64, meta_batch=4, inner_steps=[1, 5, 10, 20, 50],
                   widths=list(range(16, 513, 16)), variants=list(ORDER),
                   validation=dict(settings={"small": dict(depth=4, meta_batch=2, shots=1, queries=2)}, widths=[4],
                                   inner_steps=[1, 3], ways=5, length=16, alpha=0.4, delta=1e-3)),
        torch_threads=1, seed=seed, device=device,
    )
    if quick:
        # toy cards, named by their size so that the claims' sentences read ("On a card of 12 MiB")
        cfg.update(cards={"12 MiB": 12 * MIB, "40 MiB": 40 * MIB}, widths=list(range(8, 65, 8)),
                   along_K=dict(depth=3, meta_batch=4, length=short, inner_steps=[1, 3]),
                   across=dict(inner_steps=3, depths=[3], meta_batches=[2, 4], lengths=[short]),
                   checkpoints=dict(width=16, depth=3, meta_batch=2, length=short, inner_steps=[4],
                                    every={"4": [1, 2, 4]}, timed_inner_steps=4, timed_every=[2], repeats=1,
                                    peak_limit=1.5, time_limit=0.7),
                   conv4=dict(cfg["conv4"], size=16, width=8, meta_batch=2, inner_steps=[1, 3], widths=[],
                              validation=dict(cfg["conv4"]["validation"], inner_steps=[1])))
    return cfg


def variant_options(variant: str, K: int) -> tuple[str, dict]:
    method, options = VARIANTS[variant]
    if variant.endswith("_ckpt"):
        options = {**options, "checkpoint_every": math.ceil(math.sqrt(K))}
    return method, options


def shape_only_batch(cfg, width, depth, meta_batch, length, shots=None, queries=None, network="cnn1d",
                     device="meta"):
    """A network and a meta-batch of episodes on the meta device (shapes only); on another
    ``device`` seeded by ``cfg['seed']`` (random signals or images, random labels). ``network``:
    ``"cnn1d"`` (``depth`` layers, signals of ``length``) or ``"conv4"`` (its four blocks,
    ``length`` x ``length`` images of ``cfg['conv4']['channels']`` channels)."""
    shots, queries = shots or cfg["shots"], queries or cfg["queries"]
    if network == "cnn1d":
        build, example = (lambda: CNN1D(width=width, depth=depth, n_classes=cfg["ways"], length=length)), (1, length)
    elif network == "conv4":
        channels = cfg["conv4"]["channels"]
        build, example = (lambda: Conv4(width=width, n_classes=cfg["ways"], channels=channels, size=length)), \
            (channels, length, length)
    else:
        raise ValueError(f"network must be 'cnn1d' or 'conv4', got {network!r}")
    if device == "meta":
        with torch.device("meta"):
            return build(), *((torch.empty(meta_batch, n, *example), torch.empty(meta_batch, n, dtype=torch.long))
                              for n in (cfg["ways"] * shots, cfg["ways"] * queries))
    torch.manual_seed(cfg["seed"])
    model, g = build().to(device), torch.Generator().manual_seed(cfg["seed"])
    return model, *((torch.randn(meta_batch, n, *example, generator=g).to(device),
                     torch.randint(0, cfg["ways"], (meta_batch, n), generator=g).to(device))
                    for n in (cfg["ways"] * shots, cfg["ways"] * queries))


class Peaks:
    """Shape-only peaks, each configuration measured once and appended to ``records``."""

    def __init__(self, cfg, records: list, progress):
        self.cfg, self.records, self.progress, self.cache = cfg, records, progress, {}
        self.progress_label = None

    def __call__(self, variant, width, depth, K, B, L, part="frontier", shots=None, queries=None, network="cnn1d",
                 **extra) -> int:
        """The peak of one configuration; ``extra`` fields go into its record."""
        key = (variant, width, depth, K, B, L, shots, queries, network)
        if key not in self.cache:
            method, options = variant_options(variant, K)
            model, S, Q = shape_only_batch(self.cfg, width, depth, B, L, shots, queries, network)
            start = time.perf_counter()
            peak = peak_bytes(model, S, Q, method=method, alpha=self.cfg["alpha"], inner_steps=K,
                              delta=self.cfg["delta"], **PLAIN_DIFFERENCES, **options)
            self.records.append(dict(
                part=part, network=network, method=method, variant=variant, width=width, depth=depth, inner_steps=K, meta_batch=B,
                length=L, shots=shots or self.cfg["shots"], queries=queries or self.cfg["queries"],
                checkpoint_every=options.get("checkpoint_every"), parameters=sum(p.numel() for p in model.parameters()),
                peak_bytes=peak, seconds=time.perf_counter() - start, **extra))
            self.cache[key] = peak
            self.progress.update(1)
            if self.progress_label != (network, part, variant):
                self.progress.set_postfix_str(f"{network} {part}: {variant}")
                self.progress_label = (network, part, variant)
        return self.cache[key]


# ---------------------------------------------------------------------------------------------
# margins from the H100 run


def cuda_margins(cuda: dict | None, cpu: dict | None, floor_bytes: int, default: float) -> dict:
    """Per method: the largest ``(cuda_max_allocated + parameters + data) / CPU peak`` over
    the CUDA run's records with a CPU peak >= ``floor_bytes`` (``ratio``), over all records
    (``worst``), and the count. ``cuda_max_allocated`` counts from the allocation of the
    parameters and data, which the meter counts: they are added back. Methods the CUDA run
    lacks get ``default`` (no reference at all) or, for reptile (gradient calls only, like
    FO-MAML), the largest first-order ratio."""
    out = {}
    if cuda is not None and cpu is not None:
        ccfg = cuda["config"]
        key = lambda r: (r["setting"], r["variant"], r["width"], r["inner_steps"])  # noqa: E731
        reference = {key(r): r for r in cpu["records"]}
        for r in cuda["records"]:
            q = reference.get(key(r))
            if q is None or r.get("cuda_max_allocated") is None:
                continue
            st = ccfg["settings"][r["setting"]]
            data = st["meta_batch"] * ccfg["ways"] * (st["shots"] + st["queries"]) * (4 * ccfg["length"] + 8)
            ratio = (r["cuda_max_allocated"] + 4 * r["parameters"] + data) / q["peak_bytes"]
            m = out.setdefault(r["method"], dict(ratio=0.0, worst=0.0, records=0, source="figures/cuda"))
            m["worst"] = max(m["worst"], ratio)
            if q["peak_bytes"] >= floor_bytes:
                m["ratio"], m["records"] = max(m["ratio"], ratio), m["records"] + 1
    first_order = [out[m]["ratio"] for m in ("fo_maml", "fob_forward", "fob_symmetric") if m in out]
    for method in ALL_METHODS:
        if method not in out or out[method]["records"] == 0:
            borrowed = method == "reptile" and first_order
            out[method] = dict(ratio=max(first_order) if borrowed else default, worst=None, records=0,
                               source="largest first-order ratio" if borrowed else "default")
    return out


# ---------------------------------------------------------------------------------------------
# the frontier: largest width that fits


def largest_fitting(fits, lo: int, hi: int) -> int:
    """The largest index i in (lo, hi] with ``fits(i)``, else ``lo`` (known to fit, or -1),
    for a predicate true up to some index and false after. ``hi`` is probed first: a bound
    from a smaller configuration is often the answer."""
    first = True
    while lo < hi:
        mid = hi if first else (lo + hi + 1) // 2
        first = False
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _dominated(a: tuple, b: tuple, by_K: bool) -> bool:
    """Configuration ``a = (K, depth, B, L)`` is at most ``b`` in every coordinate (K only
    when the variant's options do not change with K)."""
    return (a[0] <= b[0] if by_K else a[0] == b[0]) and all(x <= y for x, y in zip(a[1:], b[1:]))


def frontier(cfg, peaks: Peaks, margins: dict, groups: list[tuple], network: str = "cnn1d") -> list[dict]:
    """For each variant, card and group ``(K, depth, B, L)``: the largest width of
    ``cfg['widths']`` whose predicted bytes fit the card (None when none fits)."""
    widths, cards = cfg["widths"], sorted(cfg["cards"].items(), key=lambda kv: kv[1])
    solved, rows = {}, []
    for variant in cfg["variants"]:
        method = VARIANTS[variant][0]
        margin = margins[method]["ratio"]
        by_K = not variant.endswith("_ckpt")
        for group in sorted(groups):
            K, depth, B, L = group
            lo = -1
            for card, capacity in cards:
                bounds = [i for (v, c, g), i in solved.items()
                          if v == variant and c == card and _dominated(g, group, by_K)]
                hi = min(bounds, default=len(widths) - 1)
                fits = lambda i: margin * peaks(variant, widths[i], depth, K, B, L,  # noqa: E731
                                                network=network) <= capacity
                lo = largest_fitting(fits, min(lo, hi), hi)
                solved[(variant, card, group)] = lo
                width = widths[lo] if lo >= 0 else None
                peak = peaks.cache.get((variant, width, depth, K, B, L, None, None, network)) if width else None
                rows.append(dict(network=network, variant=variant, method=method, card=card, capacity=capacity, inner_steps=K,
                                 depth=depth, meta_batch=B, length=L, width=width, peak_bytes=peak, margin=margin,
                                 predicted_bytes=None if peak is None else margin * peak))
    return rows


def monotonicity_violations(records: list[dict]) -> tuple[int, int]:
    """Pairs of measured frontier points of one variant where a configuration at most another
    in every coordinate (width, K, depth, meta-batch, length) has a larger peak; and the
    number of such comparable pairs."""
    by_variant: dict[tuple, list] = {}
    for r in records:
        if r["part"] == "frontier":
            by_variant.setdefault((r.get("network", "cnn1d"), r["variant"]), []).append(r)
    bad = pairs = 0
    for (_, variant), rows in by_variant.items():
        by_K = not variant.endswith("_ckpt")
        for a in rows:
            for b in rows:
                if a is b:
                    continue
                ka = (a["inner_steps"], a["width"], a["depth"], a["meta_batch"], a["length"])
                kb = (b["inner_steps"], b["width"], b["depth"], b["meta_batch"], b["length"])
                if _dominated(ka, kb, by_K):
                    pairs += 1
                    bad += a["peak_bytes"] > b["peak_bytes"]
    return bad, pairs


# ---------------------------------------------------------------------------------------------
# parts


def _validate(cfg, peaks: Peaks, val=None, network="cnn1d") -> list[dict]:
    """Meta peaks against the CPU meter (both by :func:`peak_bytes`) on the grid ``val``
    (default: the memory run's, ``cfg['validation']``)."""
    val, rows = val or cfg["validation"], []
    for variant in cfg["variants"]:
        for name, st in val["settings"].items():
            for width in val["widths"]:
                for K in val["inner_steps"]:
                    method, options = variant_options(variant, K)
                    model, supports, queries = shape_only_batch(cfg, width, st["depth"], st["meta_batch"],
                                                                val["length"], st["shots"], st["queries"], network,
                                                                device="cpu")
                    kw = dict(method=method, alpha=val["alpha"], inner_steps=K, delta=val["delta"], **options)
                    start = time.perf_counter()
                    cpu = peak_bytes(model, supports, queries, device="cpu", **PLAIN_DIFFERENCES, **kw)
                    cpu_seconds = time.perf_counter() - start
                    meta = peaks(variant, width, st["depth"], K, st["meta_batch"], val["length"], part="validation",
                                 shots=st["shots"], queries=st["queries"], network=network, setting=name,
                                 cpu_peak_bytes=cpu, cpu_seconds=cpu_seconds)
                    rows.append(dict(network=network, setting=name, variant=variant, width=width, inner_steps=K, meta=meta, cpu=cpu))
    return rows


def _checkpoints(cfg, records: list, progress) -> None:
    """Peak (meta), gradient and Hessian-vector calls and, at the timed K, CPU time of FO-MAML
    and of each storage option of FO-B symmetric and HVP-MAML: stored, lean and
    ``checkpoint_every = c`` for every c of the plan."""
    ck = cfg["checkpoints"]
    width, depth, B, L = ck["width"], ck["depth"], ck["meta_batch"], ck["length"]
    common = dict(alpha=cfg["alpha"], delta=cfg["delta"])
    for K in ck["inner_steps"]:
        plan = [("fo_maml", "fo_maml", {}, None)]
        for method, storage in STORAGE.items():
            plan += [(method, method, storage["stored"], None), (f"{method}_lean", method, storage["lean"], None)]
            plan += [(f"{method}_ckpt", method, dict(storage["ckpt"], checkpoint_every=c), c) for c in ck["every"][str(K)]]
        model, S, Q = shape_only_batch(cfg, width, depth, B, L)
        for variant, method, options, c in plan:
            infos = []
            start = time.perf_counter()
            peak = measure(lambda: infos.append(meta_gradient_batch(model, S, Q, method=method, inner_steps=K,
                                                                    return_info=True, **common, **PLAIN_DIFFERENCES,
                                                                    **options)[1]),
                           *model.parameters(), *S, *Q, device="meta").peak_bytes
            records.append(dict(part="checkpoint", network="cnn1d", method=method, variant=variant, checkpoint_every=c,
                                options=options, width=width, depth=depth, inner_steps=K, meta_batch=B, length=L,
                                shots=cfg["shots"], queries=cfg["queries"], peak_bytes=peak,
                                grad_calls=infos[0].grad_calls, hvp_calls=infos[0].inner_hvp_calls,
                                meta_seconds=time.perf_counter() - start, seconds=None, times=None))
            progress.update(1)
        progress.set_postfix_str(f"checkpoints: K {K} measured")
    _time_checkpoints(cfg, records, progress)


def _time_checkpoints(cfg, records: list, progress) -> None:
    """Median CPU time of interleaved repeats at the timed K (FO-MAML, the lean variants and
    the checkpointed ones at ``timed_every``); for FO-B's untimed points, predicted seconds
    (gradient calls x the lean variant's seconds per call)."""
    ck, device = cfg["checkpoints"], cfg["device"]
    K = ck["timed_inner_steps"]
    rows = [r for r in records if r["part"] == "checkpoint" and r["inner_steps"] == K and
            (r["variant"] in ("fo_maml", "fob_symmetric_lean", "maml_hvp_lean")
             or r["checkpoint_every"] in ck["timed_every"])]
    model, supports, queries = shape_only_batch(cfg, ck["width"], ck["depth"], ck["meta_batch"], ck["length"],
                                                device=device)
    calls = {}
    for r in rows:
        calls[id(r)] = (lambda m=r["method"], o=r["options"]: meta_gradient_batch(
            model, supports, queries, method=m, alpha=cfg["alpha"], inner_steps=K, delta=cfg["delta"],
            **PLAIN_DIFFERENCES, **o))
        r["times"] = []
    for rep in range(ck["repeats"]):
        for r in rows:
            r["times"].append(wall_time(calls[id(r)], device))
            progress.update(1)
        progress.set_postfix_str(f"timing: K {K}, repeat {rep + 1} of {ck['repeats']} done")
    for r in rows:
        r["seconds"] = float(np.median(r["times"]))
    lean = next(r for r in rows if r["variant"] == "fob_symmetric_lean")
    per_call = lean["seconds"] / lean["grad_calls"]
    for r in records:
        if r["part"] == "checkpoint" and r["seconds"] is None and r["variant"] in ("fob_symmetric_lean",
                                                                                  "fob_symmetric_ckpt"):
            r["predicted_seconds"] = r["grad_calls"] * per_call


def run(cfg: dict) -> dict:
    unknown = set(cfg["variants"]) - set(VARIANTS)
    if unknown:
        raise ValueError(f"variants must be among {list(VARIANTS)}, got {sorted(unknown)}")
    references = {}
    for name in ("cpu_reference", "cuda_reference"):
        path = Path(cfg[name]) if cfg[name] else None
        references[name] = load_results(path) if path is not None and path.exists() else None
    margins = cuda_margins(references["cuda_reference"], references["cpu_reference"], cfg["margin_floor_mib"] * MIB,
                           cfg["default_margin"])
    before = torch.get_num_threads()
    torch.set_num_threads(cfg["torch_threads"] or before)  # more threads than free cores: tens of times slower
    try:
        records, rows, validation, claim_points, corner, seconds = _measure(cfg, margins)
        with track(desc="memory_scale: conv4", unit="point") as progress:
            conv4_records, conv4 = conv4_part(cfg, margins, progress)
    finally:
        torch.set_num_threads(before)
    summary = summarize(cfg, records, rows, validation, margins, claim_points, corner, cfg_along(cfg), seconds)
    summary["conv4"] = conv4
    return make_results(NAME, cfg, records + conv4_records, summary, claims(cfg, summary) + _conv4_claims(cfg, conv4),
                        device=cfg["device"])


def cfg_along(cfg) -> list[tuple]:
    ak = cfg["along_K"]
    return [(K, ak["depth"], ak["meta_batch"], ak["length"]) for K in ak["inner_steps"]]


def _measure(cfg, margins):
    records: list[dict] = []
    with track(desc="memory_scale", unit="point") as progress:
        peaks = Peaks(cfg, records, progress)
        start = time.perf_counter()
        validation = _validate(cfg, peaks)
        seconds = {"validation": time.perf_counter() - start}
        ac, along = cfg["across"], cfg_along(cfg)
        across = [(ac["inner_steps"], d, b, n) for d in ac["depths"] for b in ac["meta_batches"] for n in ac["lengths"]]
        start = time.perf_counter()
        rows = frontier(cfg, peaks, margins, sorted(set(along + across)))
        seconds["frontier"] = time.perf_counter() - start
        claim_points = _claim_points(cfg, peaks, rows, margins, along)
        K, depth, B, L = max(along)
        corner = {v: margins[VARIANTS[v][0]]["ratio"] * peaks(v, max(cfg["widths"]), depth, K, B, L)
                  for v in cfg["variants"]}
        start = time.perf_counter()
        _checkpoints(cfg, records, progress)
        seconds["checkpoints"] = time.perf_counter() - start
    return records, rows, validation, claim_points, corner, seconds


def _claim_points(cfg, peaks: Peaks, rows: list[dict], margins: dict, along: list[tuple]) -> dict:
    """For each card and FO-B symmetric variant: at the largest K of the along-K frontier
    where the variant fits a wider network than MAML, both methods' bytes at the variant's
    largest width (MAML's measured there if the search skipped it)."""
    out = {}
    for card, capacity in cfg["cards"].items():
        for variant in ("fob_symmetric", "fob_symmetric_lean"):
            if variant not in cfg["variants"] or "maml" not in cfg["variants"]:
                continue
            width_of = {(r["variant"], r["inner_steps"]): r["width"] for r in rows if r["card"] == card
                        and (r["inner_steps"], r["depth"], r["meta_batch"], r["length"]) in along}
            wins = [g for g in along if (width_of[(variant, g[0])] or 0) > (width_of[("maml", g[0])] or 0)]
            if not wins:
                continue
            K, depth, B, L = max(wins)
            width = width_of[(variant, K)]
            fob, maml = peaks(variant, width, depth, K, B, L), peaks("maml", width, depth, K, B, L)
            out[f"{card}/{variant}"] = dict(
                card=card, capacity=capacity, variant=variant, width=width, depth=depth, inner_steps=K, meta_batch=B,
                length=L, fob_peak=fob, fob_predicted=margins["fob_symmetric"]["ratio"] * fob, maml_peak=maml,
                maml_predicted=margins["maml"]["ratio"] * maml, maml_width=width_of[("maml", K)],
                wins=len(wins), groups=len(along))
    return out


# ---------------------------------------------------------------------------------------------
# Conv4 at miniImageNet's size


CONV4_DEPTH = 4  # Conv4's blocks, the depth coordinate of its records


def conv4_part(cfg, margins: dict, progress) -> tuple[list[dict], dict]:
    """Records and summary of the Conv4 part: validation against the CPU meter, the peak of
    every variant at ``width`` along K, and the frontier (largest width per card) along K."""
    c4, records = cfg["conv4"], []
    sub = dict(cfg, variants=c4["variants"], widths=c4["widths"])
    peaks = Peaks(sub, records, progress)
    start = time.perf_counter()
    validation = _validate(sub, peaks, c4["validation"], network="conv4")
    seconds = {"validation": time.perf_counter() - start}
    B, size, ks = c4["meta_batch"], c4["size"], c4["inner_steps"]
    start = time.perf_counter()
    at_width = {v: {K: peaks(v, c4["width"], CONV4_DEPTH, K, B, size, network="conv4") for K in ks}
                for v in c4["variants"]}
    rows = frontier(sub, peaks, margins, [(K, CONV4_DEPTH, B, size) for K in ks], network="conv4") \
        if c4["widths"] else []  # no widths: the peaks at ``width`` alone
    seconds["frontier"] = time.perf_counter() - start
    bad, pairs = monotonicity_violations(records)
    summary = dict(
        validation=agreement(validation), peaks=at_width,
        predicted_bytes={v: {K: margins[VARIANTS[v][0]]["ratio"] * b for K, b in ks_.items()}
                         for v, ks_ in at_width.items()},
        over_maml={v: {K: b / at_width["maml"][K] for K, b in ks_.items()} for v, ks_ in at_width.items()},
        along_K_widths={card: {v: {r["inner_steps"]: r["width"] for r in rows if r["card"] == card and r["variant"] == v}
                               for v in c4["variants"]} for card in cfg["cards"]},
        frontier=rows, monotonicity=dict(violations=bad, comparable_pairs=pairs),
        seconds_by_part={k: round(v, 1) for k, v in seconds.items()}, environment=environment(cfg["device"]))
    summary["highlights"] = _conv4_highlights(cfg, summary)
    return records, summary


def _conv4_highlights(cfg, s) -> list[str]:
    c4 = cfg["conv4"]
    v = s["validation"]
    ks = c4["inner_steps"]
    where = (f"Conv4 width {c4['width']}, {c4['size']}x{c4['size']}x{c4['channels']}, meta-batch {c4['meta_batch']}, "
             f"{cfg['ways']}-way {cfg['shots']}-shot {cfg['queries']} queries")
    lines = [f"Conv4: shape-only peaks equal the CPU meter on {v['equal']} of {v['configurations']} configurations "
             f"(largest relative difference {v['largest_relative_difference']:.2g})",
             f"{where}, meter peak at K = {'/'.join(map(str, ks))}: " + "; ".join(
                 f"{name} " + "/".join(_gb(b) for b in by_K.values()) for name, by_K in s["peaks"].items()),
             f"{where}, peak / MAML's at K = {ks[-1]}: " + ", ".join(
                 f"{name} {list(r.values())[-1]:.3g}" for name, r in s["over_maml"].items())]
    for card, widths in (s["along_K_widths"] if s["frontier"] else {}).items():
        lines.append(f"{card}, largest Conv4 width by K ({c4['size']}x{c4['size']}, meta-batch {c4['meta_batch']}): "
                     + "; ".join(f"{name} " + "/".join(str(w or 0) for w in ws.values()) for name, ws in widths.items())
                     + f" at K = {'/'.join(map(str, ks))}")
    return lines


def _conv4_claims(cfg, s) -> list[dict]:
    c4, v = cfg["conv4"], s["validation"]
    ks = c4["inner_steps"]
    p = {v: {int(k): b for k, b in by_K.items()} for v, by_K in s["peaks"].items()}  # keys are text once in JSON
    out = [claim(
        "conv4_meta_peak_equals_cpu_meter",
        "On Conv4 with BatchNorm, peak bytes on shape-only (meta) tensors equal the CPU meter's for every method and "
        "storage variant",
        f"equal to the byte at width {c4['validation']['widths']}, {c4['validation']['length']}x"
        f"{c4['validation']['length']}, K = {c4['validation']['inner_steps']}, every variant",
        f"{v['equal']} of {v['configurations']} equal; largest relative difference {v['largest_relative_difference']:.2g}",
        verdict(v["equal"] == v["configurations"], v["largest_relative_difference"] > 0.01))]
    flat = [name for name in ("fob_symmetric_lean", "maml_hvp_lean") if name in p]
    if "maml" in p and flat and len(ks) > 1:
        k0 = ks[1] if len(ks) > 2 else ks[0]  # reference K: the second (lean peaks may rise from K = 1), not the last
        grows = p["maml"][ks[-1]] / p["maml"][k0]
        stays = {name: p[name][ks[-1]] / p[name][k0] for name in flat}
        where = "At miniImageNet's size" if c4["size"] == 84 else "On a small Conv4"
        out.append(claim(
            "conv4_maml_grows_lean_flat_in_K",
            f"{where} (Conv4 width {c4['width']}, {c4['size']}x{c4['size']}x{c4['channels']}, "
            f"meta-batch {c4['meta_batch']}) MAML's memory grows with K; lean FO-B's and lean HVP-MAML's do not",
            f"peak at K = {ks[-1]} over the peak at K = {k0}: MAML >= {ks[-1] / k0 / 2:g}, lean variants <= 1.01",
            f"MAML {grows:.3g} ({_gb(p['maml'][k0])} to {_gb(p['maml'][ks[-1]])}); " + ", ".join(
                f"{name} {r:.3g} ({_gb(p[name][ks[-1]])})" for name, r in stays.items()),
            verdict(grows >= ks[-1] / k0 / 2 and all(r <= 1.01 for r in stays.values()),
                    grows < 1.2 or any(r > 1.5 for r in stays.values()))))
    return out


def update_conv4(results: dict, conv4: dict | None = None) -> dict:
    """``results`` (a full run's) with its Conv4 part measured anew (with ``conv4``, else the
    config's or the default ``conv4`` settings): the records of ``network="conv4"``, the
    summary's ``conv4`` entry and the ``conv4_`` claims replaced, the rest kept."""
    cfg = dict(results["config"])
    cfg["conv4"] = conv4 or cfg.get("conv4") or config(device=cfg["device"])["conv4"]
    margins = {**cuda_margins(None, None, 0, cfg["default_margin"]), **results["summary"]["margins"]}
    before = torch.get_num_threads()
    torch.set_num_threads(cfg["torch_threads"] or before)
    try:
        with track(desc="memory_scale: conv4", unit="point") as progress:
            records, summary = conv4_part(cfg, margins, progress)
    finally:
        torch.set_num_threads(before)
    kept = [dict(r, network=r.get("network", "cnn1d")) for r in results["records"] if r.get("network") != "conv4"]
    claims_ = [c for c in results["claims"] if not c["id"].startswith("conv4_")] + _conv4_claims(cfg, summary)
    merged = make_results(NAME, cfg, kept + records, dict(results["summary"], margins=margins, conv4=summary), claims_)
    return dict(merged, environment=results["environment"])  # the environment of the CNN1D parts' run


# ---------------------------------------------------------------------------------------------
# summary and claims


def _group_text(r) -> str:
    return f"depth {r['depth']}, meta-batch {r['meta_batch']}, length {r['length']}, K {r['inner_steps']}"


def agreement(validation: list[dict]) -> dict:
    """How many meta peaks equal the CPU meter's, and the largest relative difference."""
    return dict(configurations=len(validation), equal=sum(v["meta"] == v["cpu"] for v in validation),
                largest_relative_difference=max(abs(v["meta"] - v["cpu"]) / v["cpu"] for v in validation),
                largest_difference_bytes=max(abs(v["meta"] - v["cpu"]) for v in validation))


def summarize(cfg, records, rows, validation, margins, claim_points, corner, along, seconds) -> dict:
    out = {"margins": margins, "frontier": rows, "claim_points": claim_points,
           "seconds_by_part": {k: round(v, 1) for k, v in seconds.items()}}
    if validation:
        out["validation"] = agreement(validation)
    bad, pairs = monotonicity_violations(records)
    out["monotonicity"] = dict(violations=bad, comparable_pairs=pairs)
    out["frontier_points_measured"] = sum(r["part"] == "frontier" for r in records)
    # along K: the largest width per variant and card
    out["along_K_widths"] = {card: {v: {r["inner_steps"]: r["width"] for r in rows if r["card"] == card and
                                        r["variant"] == v and (r["inner_steps"], r["depth"], r["meta_batch"],
                                                               r["length"]) in along}
                                    for v in cfg["variants"]} for card in cfg["cards"]}
    out["largest_configuration"] = dict(zip(("inner_steps", "depth", "meta_batch", "length"), max(along)),
                                        width=max(cfg["widths"]))
    out["largest_configuration_bytes"] = corner  # predicted CUDA bytes (margin x meta peak)
    out["checkpoints"] = _checkpoint_summary(cfg, records)
    out["highlights"] = _highlights(cfg, out)
    return out


def _storage_summary(rows, method, fo) -> dict:
    """One method's storage options at one K: stored and lean peaks, lean calls and seconds,
    and per ``checkpoint_every`` its peak over FO-MAML's, calls and time over the lean
    variant's."""
    lean = next(r for r in rows if r["variant"] == f"{method}_lean")
    points = []
    for r in rows:
        if r["variant"] != f"{method}_ckpt":
            continue
        p = dict(checkpoint_every=r["checkpoint_every"], peak_bytes=r["peak_bytes"], grad_calls=r["grad_calls"],
                 hvp_calls=r.get("hvp_calls", 0), peak_over_fo_maml=r["peak_bytes"] / fo["peak_bytes"],
                 calls_over_lean=r["grad_calls"] / lean["grad_calls"])
        if r["seconds"] is not None and lean["seconds"]:
            p["seconds"], p["time_over_lean"] = r["seconds"], r["seconds"] / lean["seconds"]
        points.append(p)
    return dict(lean_peak=lean["peak_bytes"], lean_calls=lean["grad_calls"], lean_seconds=lean["seconds"],
                points=points, stored_peak=next(r["peak_bytes"] for r in rows if r["variant"] == method))


def _fob_over_hvp(fob: dict, hvp: dict) -> dict:
    """FO-B symmetric over HVP-MAML at equal storage option: peak (and time where both are
    timed) for stored, lean and each ``checkpoint_every``."""
    out = {"stored": dict(peak=fob["stored_peak"] / hvp["stored_peak"]),
           "lean": dict(peak=fob["lean_peak"] / hvp["lean_peak"])}
    if fob["lean_seconds"] and hvp["lean_seconds"]:
        out["lean"]["time"] = fob["lean_seconds"] / hvp["lean_seconds"]
    by_c = {p["checkpoint_every"]: p for p in hvp["points"]}
    for p in fob["points"]:
        q = by_c[p["checkpoint_every"]]
        out[f"c={p['checkpoint_every']}"] = dict(peak=p["peak_bytes"] / q["peak_bytes"], **(
            {"time": p["seconds"] / q["seconds"]} if "seconds" in p and "seconds" in q else {}))
    return out


def _checkpoint_summary(cfg, records) -> dict:
    ck = cfg["checkpoints"]
    out = {}
    for K in ck["inner_steps"]:
        rows = [r for r in records if r["part"] == "checkpoint" and r["inner_steps"] == K]
        fo = next(r for r in rows if r["variant"] == "fo_maml")
        fob, hvp = _storage_summary(rows, "fob_symmetric", fo), _storage_summary(rows, "maml_hvp", fo)
        out[str(K)] = dict(fo_maml_peak=fo["peak_bytes"], **fob, hvp=hvp, fob_over_hvp=_fob_over_hvp(fob, hvp))
    K = str(ck["timed_inner_steps"])
    good = [p for p in out[K]["points"] if "time_over_lean" in p and p["peak_over_fo_maml"] <= ck["peak_limit"]
            and p["time_over_lean"] <= ck["time_limit"]]
    out["meets_budget"] = min(good, key=lambda p: p["time_over_lean"]) if good else None
    return out


def _gb(x) -> str:
    """Decimal GB (MB below one GB), as cards are sold."""
    if x is None:
        return "-"
    return f"{x / GB:.1f} GB" if x >= GB else f"{x / 10**6:.1f} MB"


def _highlights(cfg, s) -> list[str]:
    lines = []
    if "validation" in s:
        v = s["validation"]
        lines.append(f"shape-only (meta) peaks equal the CPU meter on {v['equal']} of {v['configurations']} "
                     f"configurations (the CPU memory run's grid up to width {max(cfg['validation']['widths'])}, every "
                     f"variant; largest relative difference {v['largest_relative_difference']:.2g})")
    lines.append("CUDA margins over the meter (H100 run, CPU peak >= "
                 f"{cfg['margin_floor_mib']} MiB): "
                 + ", ".join(f"{m} {d['ratio']:.3f}" for m, d in s["margins"].items()))
    corner = s["largest_configuration"]
    lines.append(f"largest configuration (width {corner['width']}, {_group_text(corner)}), predicted CUDA bytes: "
                 + ", ".join(f"{v} {_gb(b)}" for v, b in s["largest_configuration_bytes"].items()))
    ak = cfg["along_K"]
    for card, widths in s["along_K_widths"].items():
        lines.append(f"{card}, largest width by K (depth {ak['depth']}, meta-batch {ak['meta_batch']}, length "
                     f"{ak['length']}): " + "; ".join(f"{v} " + "/".join(str(w or 0) for w in ws.values())
                                                      for v, ws in widths.items())
                     + f" at K = {'/'.join(str(k) for k in ak['inner_steps'])}")
    for p in s["claim_points"].values():
        lines.append(f"{p['card']}: at width {p['width']}, {_group_text(p)}, {p['variant']} needs "
                     f"{_gb(p['fob_predicted'])} and MAML {_gb(p['maml_predicted'])} "
                     f"(MAML's largest width there: {p['maml_width'] or 'none'})")
    ck = s["checkpoints"]
    for K in (str(k) for k in cfg["checkpoints"]["inner_steps"]):
        c = ck[K]
        g = cfg["checkpoints"]
        lines.append(f"checkpoints, K {K} (width {g['width']}, depth {g['depth']}, meta-batch {g['meta_batch']}): "
                     "peak / FO-MAML's, "
                     f"calls: lean {c['lean_peak'] / c['fo_maml_peak']:.2f}, {c['lean_calls']}; " + "; ".join(
                         f"c={p['checkpoint_every']} {p['peak_over_fo_maml']:.2f}, {p['grad_calls']}"
                         + (f", time / lean's {p['time_over_lean']:.2f}" if "time_over_lean" in p else "")
                         for p in c["points"]))
        lines.append(f"FO-B symmetric / HVP-MAML at equal storage, K {K}: " + "; ".join(
            f"{option} peak {r['peak']:.2f}" + (f", time {r['time']:.2f}" if "time" in r else "")
            for option, r in c["fob_over_hvp"].items()))
    return lines


def claims(cfg, s) -> list[dict]:
    out = []
    if "validation" in s:
        v = s["validation"]
        worst = v["largest_relative_difference"]
        out.append(claim(
            "meta_peak_equals_cpu_meter",
            "Peak bytes measured on shape-only (meta) tensors equal the CPU meter's for every method and FO-B variant",
            "equal to the byte on every configuration of the CPU memory run's grid up to width "
            f"{max(cfg['validation']['widths'])}, every variant",
            f"{v['equal']} of {v['configurations']} equal; largest relative difference {worst:.2g}",
            verdict(v["equal"] == v["configurations"], worst > 0.01)))
    for key, p in s["claim_points"].items():
        label = "stored iterates, stacked stencil" if p["variant"] == "fob_symmetric" else "lean"
        out.append(claim(
            f"{p['variant']}_fits_where_maml_does_not_{p['card'].replace(' ', '')}",
            f"FO-B-MAML symmetric ({label}) fits on a card of {p['card']} in configurations where MAML does not",
            "a configuration where MAML's predicted bytes exceed the card and FO-B's fit",
            f"width {p['width']}, {_group_text(p)}: MAML {_gb(p['maml_predicted'])} (meter {_gb(p['maml_peak'])}), "
            f"FO-B {_gb(p['fob_predicted'])} (meter {_gb(p['fob_peak'])}); wider than MAML at {p['wins']} of "
            f"{p['groups']} values of K",
            verdict(p["maml_predicted"] > p["capacity"] >= p["fob_predicted"], p["maml_predicted"] <= p["capacity"])))
    for card, widths in s["along_K_widths"].items():
        if "maml" in widths and "fob_symmetric_lean" in widths:
            maml, lean = list(widths["maml"].values()), list(widths["fob_symmetric_lean"].values())
            ks = list(widths["maml"])
            ref = 1 if len(ks) > 2 else 0  # lean FO-B's reference K: the second (its width may fall from K = 1)
            shrinks = (maml[-1] or 0) < (maml[0] or 0)
            flat = (lean[-1] or 0) >= (lean[ref] or 0)
            out.append(claim(
                f"maml_frontier_shrinks_lean_flat_{card.replace(' ', '')}",
                f"On a card of {card}, MAML's largest width falls as K grows; lean FO-B's does not beyond "
                f"K = {ks[ref]}",
                f"MAML's largest width at K = {ks[-1]} below its width at K = {ks[0]}; lean FO-B's at K = {ks[-1]} "
                f"equal to its width at K = {ks[ref]}",
                f"MAML {'/'.join(str(w or 0) for w in maml)}, lean {'/'.join(str(w or 0) for w in lean)} at K = "
                f"{'/'.join(str(k) for k in ks)}",
                verdict(shrinks and flat, not shrinks or not flat)))
        for option, word, label in (("lean", "lean", "lean"),
                                    ("ckpt", "checkpointed", "checkpoint_every = ceil(sqrt(K))")):
            fob, hvp = widths.get(f"fob_symmetric_{option}"), widths.get(f"maml_hvp_{option}")
            if fob and hvp:
                narrower = [k for k in fob if (fob[k] or 0) < (hvp[k] or 0)]
                out.append(claim(
                    f"fob_{word}_fits_as_wide_as_hvp_{word}_{card.replace(' ', '')}",
                    f"On a card of {card}, FO-B symmetric ({label}) fits a network at least as wide as HVP-MAML "
                    f"with the same storage option, at every K",
                    "FO-B's largest width >= HVP-MAML's at every K of the along-K frontier",
                    f"FO-B {'/'.join(str(w or 0) for w in fob.values())}, HVP-MAML "
                    f"{'/'.join(str(w or 0) for w in hvp.values())} at K = {'/'.join(str(k) for k in fob)}",
                    verdict(not narrower, bool(narrower))))
    ck, lim = s["checkpoints"], cfg["checkpoints"]
    where = f"width {lim['width']}, depth {lim['depth']}, meta-batch {lim['meta_batch']}"
    ratios = {(K, option): r for K in (str(k) for k in lim["inner_steps"])
              for option, r in ck[K]["fob_over_hvp"].items() if option != "stored"}
    worst = max(ratios, key=lambda k: ratios[k]["peak"])
    out.append(claim(
        "fob_below_hvp_lean_or_checkpointed",
        f"Lean or checkpointed, FO-B symmetric needs less memory than HVP-MAML with the same storage option ({where})",
        f"peak(FO-B) / peak(HVP-MAML) < 1 for lean and every checkpoint_every, K = "
        f"{'/'.join(str(k) for k in lim['inner_steps'])}",
        f"worst {ratios[worst]['peak']:.3f} (K {worst[0]}, {worst[1]}); stored (stacked stencil): " + ", ".join(
            f"K {K} {ck[K]['fob_over_hvp']['stored']['peak']:.2f}" for K in (str(k) for k in lim["inner_steps"])),
        verdict(ratios[worst]["peak"] < 1, ratios[worst]["peak"] > 1)))
    K = str(lim["timed_inner_steps"])
    times = {option: r["time"] for option, r in ck[K]["fob_over_hvp"].items() if "time" in r}
    if times:
        out.append(claim(
            "fob_time_vs_hvp_lean_or_checkpointed",
            f"Lean or checkpointed, FO-B symmetric is not slower than HVP-MAML with the same storage option "
            f"(K {K}, {where}, CPU)",
            "time(FO-B) / time(HVP-MAML) < 1 at every timed option (refuted above 1.1)",
            ", ".join(f"{option} {t:.2f}" for option, t in times.items()),
            verdict(max(times.values()) < 1, max(times.values()) > 1.1)))
    timed = [p for p in ck[K]["points"] if "time_over_lean" in p]
    if timed:
        best = ck["meets_budget"]
        text = "; ".join(f"c={p['checkpoint_every']}: peak {p['peak_over_fo_maml']:.2f}x FO-MAML's, time "
                         f"{p['time_over_lean']:.2f}x lean's ({p['grad_calls']} vs {ck[K]['lean_calls']} calls)"
                         for p in timed)
        out.append(claim(
            "checkpoints_between_lean_and_stored",
            f"FO-B symmetric with checkpoint_every=c needs at most {lim['peak_limit']}x FO-MAML's peak memory in "
            f"at most {lim['time_limit']}x the lean variant's time (K {K}, width {lim['width']}, heavy setting, CPU)",
            f"some c with peak <= {lim['peak_limit']}x FO-MAML's and time <= {lim['time_limit']}x lean's",
            (f"c={best['checkpoint_every']} meets both; " if best else "no c meets both; ") + text,
            verdict(best is not None, best is None)))
    return out


# ---------------------------------------------------------------------------------------------
# figure


def plot(results: dict, out_dir) -> list[Path]:
    cfg, s, recs = results["config"], results["summary"], results["records"]
    path = Path(out_dir) / f"{NAME}.png"
    colors = dict(plotting.METHOD_COLORS, fob_symmetric_lean=plotting.METHOD_COLORS["fob_symmetric"],
                  fob_symmetric_ckpt="tab:olive", maml_hvp_lean=plotting.METHOD_COLORS["maml_hvp"],
                  maml_hvp_ckpt=plotting.METHOD_COLORS["maml_hvp"])
    dashes = {"fob_symmetric_lean": "--", "fob_symmetric_ckpt": "-.", "maml_hvp_lean": "--", "maml_hvp_ckpt": "-."}
    cards = list(cfg["cards"])
    conv4 = s.get("conv4")
    with plotting.style():
        fig, axes = plotting.panels(8 if conv4 else 6, width=5.2, height=4.0, cols=4 if conv4 else 3)
        ax = axes[0]
        for v in cfg["variants"]:
            for card, marker in zip(cards, "os"):
                ws = s["along_K_widths"][card][v]
                ax.plot([int(k) for k in ws], [w or 0 for w in ws.values()], marker=marker, color=colors.get(v),
                        linestyle=dashes.get(v, "-"), alpha=1.0 if card == cards[0] else 0.5,
                        label=f"{v} ({card})" if card == cards[0] else None)
        ak = cfg["along_K"]
        ax.set(title=f"largest width that fits (o {cards[0]}, s {cards[-1]}; top = all widths)\ndepth "
                     f"{ak['depth']}, meta-batch {ak['meta_batch']}, length {ak['length']}", xlabel="inner steps K",
               ylabel="width", xscale="log")
        plotting.plain_ticks(ax.xaxis, ak["inner_steps"])
        ax.legend(fontsize=6)
        ax = axes[1]
        ac = cfg["across"]
        groups = [(d, b, n) for d in ac["depths"] for b in ac["meta_batches"] for n in ac["lengths"]]
        for i, v in enumerate(cfg["variants"]):
            ws = {(r["depth"], r["meta_batch"], r["length"]): r["width"] or 0 for r in s["frontier"]
                  if r["variant"] == v and r["card"] == cards[0] and r["inner_steps"] == ac["inner_steps"]}
            bar = 0.85 / len(cfg["variants"])
            ax.bar(np.arange(len(groups)) + (i - len(cfg["variants"]) / 2) * bar, [ws.get(g, 0) for g in groups],
                   width=bar, color=colors.get(v), hatch="//" if v in dashes else None, label=v)
        ax.set_xticks(range(len(groups)), [f"d{d}\nB{b}\nL{n}" for d, b, n in groups], fontsize=7)
        ax.set(title=f"largest width that fits {cards[0]}, K = {ac['inner_steps']}\n(colours as in the first panel; "
                     "hatched: lean or checkpointed)", ylabel="width")
        ax = axes[2]
        val = [r for r in recs if r["part"] == "validation"]
        if val:
            for v in sorted({r["variant"] for r in val}):
                rows = [r for r in val if r["variant"] == v]
                ax.scatter([r["cpu_peak_bytes"] / MIB for r in rows], [r["peak_bytes"] / MIB for r in rows], s=12,
                           color=colors.get(v), label=v)
            lim = [min(r["cpu_peak_bytes"] for r in val) / MIB, max(r["cpu_peak_bytes"] for r in val) / MIB]
            ax.plot(lim, lim, color="grey", linewidth=0.8)
            ax.legend(fontsize=6)
        ax.set(title="shape-only (meta) peak vs CPU meter\n(grid of the CPU memory run)", xlabel="CPU meter, MiB",
               ylabel="meta device, MiB", xscale="log", yscale="log")
        plotting.plain_ticks(ax.xaxis)
        plotting.plain_ticks(ax.yaxis)
        ck = s["checkpoints"]
        lim = cfg["checkpoints"]
        ax = axes[3]
        for K, marker in zip(lim["inner_steps"], "os^"):
            c = ck[str(K)]
            for name, summary in (("fob_symmetric", c), ("maml_hvp", c["hvp"])):
                pts = summary["points"]  # HVP-MAML's products count as calls: each is about one gradient's work
                calls = [p["grad_calls"] + p.get("hvp_calls", 0) for p in pts]
                ax.plot(calls, [p["peak_bytes"] / MIB for p in pts], marker=marker,
                        color=colors[f"{name}_ckpt"], label=f"{name}, K {K}")
                for p, n in zip(pts, calls):
                    ax.annotate(str(p["checkpoint_every"]), (n, p["peak_bytes"] / MIB), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
            ax.scatter([c["lean_calls"]], [c["lean_peak"] / MIB], marker="x", color="black", zorder=3,
                       label="FO-B lean" if K == lim["inner_steps"][0] else None)
            ax.axhline(lim["peak_limit"] * c["fo_maml_peak"] / MIB, color=colors["fo_maml"], linewidth=0.8,
                       linestyle=":", label=f"{lim['peak_limit']}x FO-MAML, K {K}")
        ax.set(title=f"checkpoint_every = c (labels): peak vs gradient calls\nwidth {lim['width']}, depth "
                     f"{lim['depth']}, meta-batch {lim['meta_batch']}", xlabel="gradient + Hessian-vector calls",
               ylabel="peak, MiB",
               xscale="log")
        plotting.plain_ticks(ax.xaxis)
        ax.legend(fontsize=6, loc="upper right")  # short labels: clear of the curves, which fall to the right
        ax = axes[4]
        c = ck[str(lim["timed_inner_steps"])]
        for name, summary in (("fob_symmetric", c), ("maml_hvp", c["hvp"])):
            timed = [p for p in summary["points"] if "seconds" in p]
            x = [p["peak_over_fo_maml"] for p in timed] + [summary["lean_peak"] / c["fo_maml_peak"]]
            y = [p["seconds"] / c["lean_seconds"] for p in timed] + [summary["lean_seconds"] / c["lean_seconds"]]
            ax.scatter(x, y, color=colors[f"{name}_ckpt"], label=f"{name}: checkpoint_every=c, lean")
            for xi, yi, text in zip(x, y, [f"c={p['checkpoint_every']}" for p in timed] + ["lean"]):
                ax.annotate(text, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axvline(lim["peak_limit"], color="grey", linestyle=":", linewidth=0.8)
        ax.axhline(lim["time_limit"], color="grey", linestyle=":", linewidth=0.8)
        ax.set(title=f"checkpoints, K {lim['timed_inner_steps']}: CPU time vs peak", xlabel="peak / FO-MAML's",
               ylabel="time / FO-B lean's")
        ax.legend(fontsize=6)
        ax = axes[5]
        corner, names = s["largest_configuration"], list(s["largest_configuration_bytes"])
        sizes = [s["largest_configuration_bytes"][v] for v in names]
        span = sizes + list(cfg["cards"].values())
        unit, unit_name = _unit(span)
        left = min(span) / unit / 2  # every bar and card inside the axis
        ax.barh(range(len(names)), [b / unit - left for b in sizes], left=left, color=[colors.get(v) for v in names])
        for card, capacity in cfg["cards"].items():
            ax.axvline(capacity / unit, color="grey", linestyle=":", linewidth=1)
            ax.annotate(card, (capacity / unit, len(names) - 0.5), fontsize=7, rotation=90, va="top", ha="right")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set(title=f"predicted CUDA bytes, width {corner['width']}, depth {corner['depth']}\nmeta-batch "
                     f"{corner['meta_batch']}, length {corner['length']}, K {corner['inner_steps']}",
               xlabel=f"{unit_name} (margin x meta peak)", xscale="log", xlim=(left, 2 * max(span) / unit))
        plotting.plain_ticks(ax.xaxis)
        if conv4:
            _plot_conv4(axes[6:8], cfg, conv4, colors, dashes)
        env = results["environment"]
        fig.suptitle(f"memory at scale from shapes (meta device); time on {env.get('device')}, torch {env['torch']}")
        fig.tight_layout()
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return [path]


def _unit(sizes) -> tuple[int, str]:
    """Decimal GB, or MiB when some of ``sizes`` (bytes) is below a GB (toy cards of a quick run)."""
    return (GB, "GB") if min(sizes) >= GB else (MIB, "MiB")


def _plot_conv4(axes, cfg, s, colors, dashes):
    """Conv4's meter peak along K with the cards, and each variant's peak over MAML's (one legend, beside it)."""
    c4 = cfg["conv4"]
    unit, unit_name = _unit([b for by_K in s["peaks"].values() for b in by_K.values()] + list(cfg["cards"].values()))
    for name, by_K in s["peaks"].items():
        ks = [int(k) for k in by_K]
        axes[0].plot(ks, [b / unit for b in by_K.values()], marker="o", color=colors.get(name),
                     linestyle=dashes.get(name, "-"), label=name)
        axes[1].plot(ks, list(s["over_maml"][name].values()), marker="o", color=colors.get(name),
                     linestyle=dashes.get(name, "-"), label=name)
    for card, capacity in cfg["cards"].items():
        axes[0].axhline(capacity / unit, color="grey", linestyle=":", linewidth=1)
        axes[0].annotate(card, (ks[0], capacity / unit), fontsize=7, va="bottom")
    where = f"Conv4 width {c4['width']}, {c4['size']}x{c4['size']}x{c4['channels']}, meta-batch {c4['meta_batch']}"
    axes[0].set(title=f"{where}\nmeter peak (meta device) along K", xlabel="inner steps K", ylabel=unit_name,
                xscale="log", yscale="log")
    axes[1].set(title=f"{where}\npeak / MAML's", xlabel="inner steps K", ylabel="ratio", xscale="log", yscale="log")
    for ax in axes:
        plotting.plain_ticks(ax.xaxis, ks)
    axes[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
