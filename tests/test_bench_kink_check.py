"""The kink check's benchmark: its summary is its records', and the committed run says what
the docs say of the check (free in time, every plain step flagged, no frozen one)."""
from pathlib import Path

import pytest

from fobtheory.experiments import bench_kink_check as bench
from fobtheory.results import load_results

COMMITTED = Path(__file__).resolve().parent.parent / "figures" / "bench" / "kink_check_cost.json"


@pytest.fixture(scope="module")
def committed():
    return load_results(COMMITTED)


def test_the_summary_and_the_table_are_the_records(committed):
    records = committed["records"]
    assert bench.summarize(records) == committed["summary"]
    rows = bench.table(records).splitlines()[2:]
    assert len(rows) == len(records) == 3 * len(bench.VARIANTS)
    assert {r["network"] for r in records} == {"cnn1d", "conv4", "resnet"}


def test_the_committed_run_shows_a_free_check_that_flags_every_plain_step_and_no_frozen_one(committed):
    s = committed["summary"]
    assert s["kink_check"] == bench.KINK_CHECK and committed["config"]["dtype"] == "float32"
    assert s["max_check_time_ratio"] < 1.1
    for name, n in s["networks"].items():
        assert n["checked_grad_call_ratio"] == 1, name  # the check compares gradients computed anyway
        assert n["flagged_plain"] == n["task_steps"] and n["flagged_default"] == 0, name
        assert n["plain_error"] > 0.1 and n["default_error"] < 1e-3, name
