"""One predicted point checked on a CUDA card: MAML runs out of memory where FO-B symmetric fits.

    python -m fobtheory.experiments.memory_cuda_check --out figures/cuda [--device cuda]

1. The card: ``total_memory`` from ``torch.cuda.get_device_properties`` and the free bytes
   from ``torch.cuda.mem_get_info`` (after the CUDA context), so any card size works.
2. The prediction, on the meta device (seconds): for candidate configurations in order of
   growing cost (depth 12, meta-batch 64, mnist1d's longer signal length, widths 256..1024,
   K 10..50), MAML's shape-only peak and each FO-B symmetric variant's predicted bytes
   (``margin x`` peak, margins of the H100 run as in ``memory_scale``). The first
   configuration where MAML's peak alone exceeds ``oom_factor x`` free memory and some
   FO-B variant's predicted bytes are below ``fit_factor x`` free memory is chosen (FO-B
   variants in order of speed: stored and stacked, stored, checkpointed, lean).
3. MAML runs there; ``torch.cuda.OutOfMemoryError`` is caught and recorded. Then FO-B
   symmetric runs under the meter: ``torch.cuda.max_memory_allocated`` (plus the parameters
   and data allocated before it) against the prediction.
4. ``<out>/memory_cuda_check.json`` (experiment schema; the device name in ``environment``).

About a minute of predictions and a minute or two on the card; progress lines as it goes.
"""
from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import torch

from fobtheory.experiments.memory import _episodes
from fobtheory.experiments.memory_scale import (MIB, config as scale_config, cuda_margins, shape_only_batch,
                                                 variant_options)
from fobtheory.memory import measure, peak_bytes
from fobtheory.nn import CNN1D, PLAIN_DIFFERENCES, meta_gradient_batch
from fobtheory.results import claim, claim_line, load_results, make_results, verdict, write_json_atomic

NAME = "memory_cuda_check"
# FO-B symmetric variants, fastest first (those of memory_scale, plus stored iterates with one
# stencil point per call)
FOB_VARIANTS = ("fob_symmetric", "fob_symmetric_stored_unstacked", "fob_symmetric_ckpt", "fob_symmetric_lean")


def fob_options(variant: str, K: int) -> dict:
    if variant == "fob_symmetric_stored_unstacked":
        return dict(stack_stencil=False)
    return variant_options(variant, K)[1]


def candidates(length: int) -> list[dict]:
    """Configurations in order of growing cost (gradient-call work ~ width^2 K)."""
    points = [dict(width=w, depth=12, meta_batch=64, length=length, inner_steps=K)
              for w in (256, 384, 512, 768, 1024) for K in (10, 20, 50)]
    return sorted(points, key=lambda p: (p["width"] ** 2 * p["inner_steps"], p["width"]))


def choose(points: list[dict], predict, free: int, margins: dict, *, oom_factor: float = 1.05,
           fit_factor: float = 0.9, echo=print) -> dict | None:
    """The first point where MAML's shape-only peak exceeds ``oom_factor * free`` and an FO-B
    symmetric variant's predicted bytes (margin x peak) are at most ``fit_factor * free``;
    ``predict(method, options, point) -> peak bytes``. Returns the point with ``maml_peak``,
    ``variant``, ``options``, ``fob_peak`` and ``fob_predicted``, or None."""
    for p in points:
        maml = predict("maml", {}, p)
        echo(f"  predicted: width {p['width']}, K {p['inner_steps']}: MAML meter {maml / 1e9:.1f} GB "
             f"(free {free / 1e9:.1f} GB)")
        if maml <= oom_factor * free:
            continue
        for variant in FOB_VARIANTS:
            options = fob_options(variant, p["inner_steps"])
            fob = predict("fob_symmetric", options, p)
            predicted = margins["fob_symmetric"]["ratio"] * fob
            echo(f"    {variant}: meter {fob / 1e9:.1f} GB, predicted {predicted / 1e9:.1f} GB")
            if predicted <= fit_factor * free:
                return dict(p, maml_peak=maml, maml_predicted=margins["maml"]["ratio"] * maml, variant=variant,
                            options=options, fob_peak=fob, fob_predicted=predicted)
    return None


def _free_cuda(device):
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)


def run(args) -> dict:
    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(f"device must be a CUDA device and torch must see one, got {args.device!r}")
    start = time.perf_counter()
    cfg = scale_config()
    cfg.update(device=str(device), oom_factor=args.oom_factor, fit_factor=args.fit_factor, seed=args.seed)
    props = torch.cuda.get_device_properties(device)
    torch.empty(1, device=device)  # the CUDA context, before the free memory is read
    free, total = torch.cuda.mem_get_info(device)
    print(f"{props.name}: {props.total_memory / 1e9:.1f} GB, free {free / 1e9:.1f} GB", flush=True)
    references = [load_results(p) if Path(p).exists() else None for p in (args.cuda_reference, args.cpu_reference)]
    margins = cuda_margins(*references, cfg["margin_floor_mib"] * MIB, cfg["default_margin"])
    length = cfg["along_K"]["length"]

    def predict(method, options, p):
        model, S, Q = shape_only_batch(cfg, p["width"], p["depth"], p["meta_batch"], p["length"])
        return peak_bytes(model, S, Q, method=method, alpha=cfg["alpha"], inner_steps=p["inner_steps"],
                          delta=cfg["delta"], **PLAIN_DIFFERENCES, **options)

    print("predicting on the meta device", flush=True)
    chosen = choose(candidates(length), predict, free, margins, oom_factor=args.oom_factor,
                    fit_factor=args.fit_factor, echo=lambda s: print(s, flush=True))
    predict_seconds = time.perf_counter() - start
    records = []
    if chosen is not None:
        print(f"chosen: {chosen}", flush=True)
        torch.manual_seed(args.seed)
        model = CNN1D(width=chosen["width"], depth=chosen["depth"], n_classes=cfg["ways"], length=length).to(device)
        setting = dict(meta_batch=chosen["meta_batch"], shots=cfg["shots"], queries=cfg["queries"])
        supports, queries = _episodes(dict(cfg, length=length), setting, device)
        alive = [*model.parameters(), *supports, *queries]
        base = sum(t.untyped_storage().nbytes() for t in alive)
        common = dict(alpha=cfg["alpha"], inner_steps=chosen["inner_steps"], delta=cfg["delta"])
        _free_cuda(device)
        print("running MAML (expected: out of memory)", flush=True)
        t0, error = time.perf_counter(), None
        try:
            meta_gradient_batch(model, supports, queries, method="maml", **common)
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError as err:
            error = str(err).splitlines()[0][:300]
        records.append(dict(method="maml", variant="maml", **_point(chosen), out_of_memory=error is not None,
                            error=error, meta_peak_bytes=chosen["maml_peak"], predicted_bytes=chosen["maml_predicted"],
                            cuda_max_allocated=torch.cuda.max_memory_allocated(device),
                            seconds=time.perf_counter() - t0))
        print(f"  MAML: {'out of memory' if error else 'ran'} after {records[-1]['seconds']:.1f} s", flush=True)
        _free_cuda(device)
        print(f"running {chosen['variant']} {chosen['options']}", flush=True)
        t0, error, m = time.perf_counter(), None, None
        try:
            m = measure(lambda: meta_gradient_batch(model, supports, queries, method="fob_symmetric", **common,
                                                    **PLAIN_DIFFERENCES, **chosen["options"]),
                        *alive, device=str(device))
        except torch.cuda.OutOfMemoryError as err:
            error = str(err).splitlines()[0][:300]
        records.append(dict(method="fob_symmetric", variant=chosen["variant"], **_point(chosen),
                            checkpoint_every=chosen["options"].get("checkpoint_every"), out_of_memory=error is not None,
                            error=error, meta_peak_bytes=chosen["fob_peak"], predicted_bytes=chosen["fob_predicted"],
                            peak_bytes=m.peak_bytes if m else None,
                            cuda_max_allocated=m.cuda_max_allocated + base if m else None,
                            seconds=time.perf_counter() - t0))
        print(f"  FO-B: {'out of memory' if error else 'ran'} after {records[-1]['seconds']:.1f} s; "
              f"CUDA peak {(records[-1]['cuda_max_allocated'] or 0) / 1e9:.2f} GB, predicted "
              f"{chosen['fob_predicted'] / 1e9:.2f} GB", flush=True)
    cfg.update(total_memory=props.total_memory, free_memory=free, chosen=chosen)
    summary = dict(device=props.name, total_memory=total, free_memory=free, chosen=chosen, margins=margins,
                   predict_seconds=round(predict_seconds, 1), seconds=round(time.perf_counter() - start, 1))
    return make_results(NAME, cfg, records, summary, claims(records, chosen, free), device=str(device))


def _point(p: dict) -> dict:
    return {k: p[k] for k in ("width", "depth", "inner_steps", "meta_batch", "length")}


def claims(records: list[dict], chosen: dict | None, free: int) -> list[dict]:
    if chosen is None:
        return [claim("cuda_point_found", "A configuration exists where MAML is predicted out of memory and FO-B "
                      "symmetric to fit this card", "one candidate",
                      f"none among the candidates (free {free / 1e9:.1f} GB)",
                      "inconclusive")]
    maml, fob = records
    where = f"width {maml['width']}, depth {maml['depth']}, meta-batch {maml['meta_batch']}, K {maml['inner_steps']}"
    out = [claim("maml_out_of_memory_as_predicted",
                 "MAML runs out of memory on this card where its shape-only peak exceeds the free memory",
                 f"torch.cuda.OutOfMemoryError ({where}; MAML meter {maml['meta_peak_bytes'] / 1e9:.1f} GB, "
                 f"free {free / 1e9:.1f} GB)",
                 "out of memory" if maml["out_of_memory"] else "it ran",
                 verdict(maml["out_of_memory"], not maml["out_of_memory"]))]
    ok = not fob["out_of_memory"]
    within = ok and fob["cuda_max_allocated"] <= fob["predicted_bytes"]
    out.append(claim("fob_symmetric_fits_as_predicted",
                     f"FO-B symmetric ({fob['variant']}) runs where MAML does not, within its predicted bytes",
                     f"no out-of-memory error and max_memory_allocated + parameters and data <= margin x meta peak "
                     f"({fob['predicted_bytes'] / 1e9:.2f} GB)",
                     ("out of memory" if not ok else
                      f"ran; {fob['cuda_max_allocated'] / 1e9:.2f} GB allocated at most = "
                      f"{fob['cuda_max_allocated'] / fob['meta_peak_bytes']:.3f} x the meta peak "
                      f"(CUDA meter / meta peak {fob['peak_bytes'] / fob['meta_peak_bytes']:.3f})"),
                     verdict(within, not within)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="figures/cuda", help="output folder (default figures/cuda)")
    parser.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oom-factor", type=float, default=1.05,
                        help="MAML's meter peak must exceed this x free memory (default 1.05)")
    parser.add_argument("--fit-factor", type=float, default=0.9,
                        help="FO-B's predicted bytes must stay below this x free memory (default 0.9)")
    parser.add_argument("--cuda-reference", default="figures/cuda/memory.json", help="H100 memory run (margins)")
    parser.add_argument("--cpu-reference", default="figures/memory.json", help="CPU memory run (margins)")
    args = parser.parse_args(argv)
    results = run(args)
    path = write_json_atomic(Path(args.out) / f"{NAME}.json", results)
    print(f"wrote {path} in {results['summary']['seconds']:.1f} s")
    for c in results["claims"]:
        print(claim_line(c))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
