"""The memory-at-scale experiment (frontier search, margins, checkpoints) and the CUDA check's
selection logic, on CPU with shape-only tensors."""
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.experiments import execute, memory_cuda_check, memory_scale
from fobtheory.memory import peak_bytes
from fobtheory.nn import PLAIN_DIFFERENCES
from fobtheory.results import load_results

TINY = dict(cards={"small": 2**20, "large": 1.7 * 2**20}, widths=[8, 16, 24],
            along_K=dict(depth=3, meta_batch=2, length=40, inner_steps=[1, 2]),
            across=dict(inner_steps=2, depths=[3], meta_batches=[1, 2], lengths=[40]),
            variants=["maml", "fob_symmetric_lean"],
            validation=dict(settings={"tiny": dict(depth=3, meta_batch=2, shots=1, queries=2)}, widths=[8],
                            inner_steps=[1, 2], ways=5, length=40, alpha=0.4, delta=1e-3),
            checkpoints=dict(width=8, depth=3, meta_batch=2, length=40, inner_steps=[3], every={"3": [1, 2, 3]},
                             timed_inner_steps=3, timed_every=[2], repeats=1, peak_limit=1.5, time_limit=0.7),
            conv4=dict(size=16, channels=1, width=4, meta_batch=1, inner_steps=[1, 2], widths=[2, 4, 8],
                       variants=["maml", "maml_hvp_lean"],
                       validation=dict(settings={"s": dict(depth=4, meta_batch=1, shots=1, queries=1)}, widths=[4],
                                       inner_steps=[1], ways=5, length=16, alpha=0.4, delta=1e-3)))
# every variant, K-dependent checkpoints included, more widths and groups
SMALL = dict(TINY, widths=[8, 16, 24, 32, 40], cards={"small": 6 * 2**20, "large": 12 * 2**20},
             along_K=dict(depth=3, meta_batch=2, length=40, inner_steps=[1, 3, 4]),
             across=dict(inner_steps=3, depths=[3, 4], meta_batches=[1, 2], lengths=[40, 48]),
             variants=list(memory_scale.ORDER))


@given(st.integers(-1, 20), st.integers(0, 20), st.integers(0, 20))
def test_largest_fitting_finds_the_threshold_of_a_monotone_predicate(threshold, a, b):
    lo, hi = -1, max(a, b)
    calls = []

    def fits(i):
        calls.append(i)
        return i <= threshold

    assert memory_scale.largest_fitting(fits, lo, hi) == min(threshold, hi)
    assert len(calls) <= 2 + (hi + 1).bit_length() and all(lo < i <= hi for i in calls)


def test_margins_add_back_parameters_and_data_and_skip_small_peaks():
    settings = {"s": dict(depth=3, meta_batch=2, shots=1, queries=1)}
    cuda = dict(config=dict(settings=settings, ways=5, length=40), records=[
        dict(setting="s", variant="maml", method="maml", width=8, inner_steps=1, parameters=100,
             cuda_max_allocated=2000),
        dict(setting="s", variant="maml", method="maml", width=16, inner_steps=1, parameters=100,
             cuda_max_allocated=900)])
    cpu = dict(records=[dict(setting="s", variant="maml", width=8, inner_steps=1, peak_bytes=2000),
                        dict(setting="s", variant="maml", width=16, inner_steps=1, peak_bytes=4000)])
    data = 2 * 5 * 2 * (4 * 40 + 8)  # tasks x samples x (float32 signal + int64 label)
    margins = memory_scale.cuda_margins(cuda, cpu, floor_bytes=3000, default=1.5)
    assert margins["maml"]["ratio"] == pytest.approx((900 + 400 + data) / 4000)  # the small record is skipped
    assert margins["maml"]["worst"] == pytest.approx((2000 + 400 + data) / 2000)
    assert margins["fo_maml"] == dict(ratio=1.5, worst=None, records=0, source="default")
    assert memory_scale.cuda_margins(None, None, 0, 1.2)["reptile"]["ratio"] == 1.2


@pytest.mark.parametrize("grid", [TINY, pytest.param(SMALL, marks=pytest.mark.slow)], ids=["tiny", "small"])
def test_the_sweep_finds_the_brute_force_frontier(tmp_path, grid):
    cfg = dict(grid, cpu_reference=None, cuda_reference=None)
    res = execute("memory-scale", quick=True, out=tmp_path, overrides=cfg, echo=lambda *_: None)
    assert (tmp_path / "memory_scale.png").stat().st_size > 0
    assert load_results(tmp_path / "memory_scale.json")["summary"]["highlights"]
    for c in res["claims"]:  # two values of K: no claim compares a K with itself
        assert not re.search(r"at K = (\d+) equal to its width at K = \1\b|peak at K = (\d+) over the peak at K = \2\b",
                             c["expected"]), c
    s, full = res["summary"], memory_scale.config(quick=True)
    full.update(cfg)
    assert s["validation"]["equal"] == s["validation"]["configurations"] > 0
    assert s["monotonicity"]["violations"] == 0
    for r in res["records"]:
        assert {"method", "width", "depth", "inner_steps", "meta_batch", "peak_bytes", "length", "seconds"} <= set(r)
    # brute force: every width measured, the largest whose predicted bytes fit (both networks)
    peaks = {}
    for row in s["frontier"] + s["conv4"]["frontier"]:
        method, options = memory_scale.variant_options(row["variant"], row["inner_steps"])
        widths = full["widths"] if row["network"] == "cnn1d" else full["conv4"]["widths"]
        for w in widths:
            key = (row["network"], row["variant"], w, row["depth"], row["inner_steps"], row["meta_batch"], row["length"])
            if key not in peaks:
                model, S, Q = memory_scale.shape_only_batch(full, w, row["depth"], row["meta_batch"], row["length"],
                                                            network=row["network"])
                peaks[key] = peak_bytes(model, S, Q, method=method, alpha=full["alpha"],
                                        inner_steps=row["inner_steps"], delta=full["delta"], **PLAIN_DIFFERENCES,
                                        **options)
        fitting = [w for w in widths if row["margin"] * peaks[(row["network"], row["variant"], w, *[
            row[k] for k in ("depth", "inner_steps", "meta_batch", "length")])] <= row["capacity"]]
        assert row["width"] == (max(fitting) if fitting else None), row
    assert len({r["width"] for r in s["frontier"]}) > 1  # the cards cut somewhere inside the grid
    assert len({r["width"] for r in s["conv4"]["frontier"]}) > 1
    # Conv4 with BatchNorm: the meta count is the CPU meter's to the byte
    assert s["conv4"]["validation"]["largest_relative_difference"] == 0
    assert s["conv4"]["peaks"]["maml"]["2"] > s["conv4"]["peaks"]["maml"]["1"]
    assert {c["id"] for c in res["claims"]} >= {"meta_peak_equals_cpu_meter", "checkpoints_between_lean_and_stored",
                                                "conv4_meta_peak_equals_cpu_meter", "conv4_maml_grows_lean_flat_in_K"}
    # the Conv4 part alone, folded into the results: CNN1D's records and claims kept, Conv4's replaced
    again = memory_scale.update_conv4(res, dict(full["conv4"], inner_steps=[3], widths=[]))
    cnn1d = [r for r in res["records"] if r["network"] == "cnn1d"]
    assert [r for r in again["records"] if r["network"] == "cnn1d"] == cnn1d
    assert {r["inner_steps"] for r in again["records"] if r["network"] == "conv4" and r["part"] == "frontier"} == {3}
    assert [c["id"] for c in again["claims"] if not c["id"].startswith("conv4_")] == \
        [c["id"] for c in res["claims"] if not c["id"].startswith("conv4_")]
    assert again["summary"]["conv4"]["frontier"] == [] and again["config"]["conv4"]["inner_steps"] == [3]


def test_cuda_check_chooses_the_first_point_where_maml_overflows_and_fob_fits():
    cfg = memory_scale.config(quick=True)
    points = [dict(width=w, depth=3, meta_batch=2, length=40, inner_steps=K) for w in (8, 16, 32) for K in (1, 3)]
    margins = {"maml": dict(ratio=1.1), "fob_symmetric": dict(ratio=1.05)}
    seen = []

    def predict(method, options, p):
        seen.append((method, p["width"], p["inner_steps"]))
        model, S, Q = memory_scale.shape_only_batch(cfg, p["width"], p["depth"], p["meta_batch"], p["length"])
        return peak_bytes(model, S, Q, method=method, alpha=0.4, inner_steps=p["inner_steps"], **PLAIN_DIFFERENCES,
                          **options)

    maml = {(p["width"], p["inner_steps"]): predict("maml", {}, p) for p in points}
    free = sorted(maml.values())[2]  # the three smallest MAML peaks fit (the third exactly)
    chosen = memory_cuda_check.choose(points, predict, free, margins, oom_factor=1.0, fit_factor=0.9,
                                      echo=lambda *_: None)
    assert chosen is not None and chosen["maml_peak"] > free and chosen["fob_predicted"] <= 0.9 * free
    first = next(p for p in points if maml[(p["width"], p["inner_steps"])] > free)
    assert (chosen["width"], chosen["inner_steps"]) == (first["width"], first["inner_steps"])
    assert chosen["fob_predicted"] == pytest.approx(1.05 * chosen["fob_peak"])
    assert memory_cuda_check.choose(points, predict, 10**15, margins, echo=lambda *_: None) is None


def test_cuda_check_claims_follow_the_records():
    chosen = dict(width=8, depth=3, meta_batch=2, length=40, inner_steps=4)
    maml = dict(chosen, out_of_memory=True, meta_peak_bytes=10**9)
    fob = dict(chosen, variant="fob_symmetric", out_of_memory=False, meta_peak_bytes=100, peak_bytes=100,
               predicted_bytes=110, cuda_max_allocated=105)
    verdicts = [c["verdict"] for c in memory_cuda_check.claims([maml, fob], chosen, free=500)]
    assert verdicts == ["confirmed", "confirmed"]
    verdicts = [c["verdict"] for c in memory_cuda_check.claims([dict(maml, out_of_memory=False),
                                                                dict(fob, cuda_max_allocated=120)], chosen, free=500)]
    assert verdicts == ["refuted", "refuted"]
    assert memory_cuda_check.claims([], None, free=500)[0]["verdict"] == "inconclusive"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_check_refuses_to_run_without_cuda():
    with pytest.raises(ValueError, match="CUDA device"):
        memory_cuda_check.main(["--device", "cpu", "--out", "unused"])
