"""The second-order experiment's quick run: what a small budget decides honestly."""
from fobtheory.experiments import execute, second_order


def test_quick_run_decides_exactness_prior_art_kernels_and_training(tmp_path):
    results = execute("second-order", quick=True, out=tmp_path, echo=lambda *_: None)
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    for decided in ("maml_hvp_equals_maml", "hf_maml_equals_fob_symmetric_J1", "fob_order4_beyond_hf_maml",
                    "only_first_order_is_right_through_kernels", "maml_hvp_trains_like_maml",
                    "maml_hvp_lean_flat_in_K"):
        assert verdicts[decided] == "confirmed", decided
    s = results["summary"]
    assert s["kernel"]["maml"].startswith("method='maml' differentiates the model's backward")
    assert s["hf_calls"]["fob_forward"] < s["hf_calls"]["hf_maml"] < s["hf_calls"]["fob_order4"]
    table = [r for r in results["records"] if r["part"] == "table"]
    assert {r["variant"] for r in table} == set(second_order.TABLE_VARIANTS)
    assert (tmp_path / "second_order.png").exists()
