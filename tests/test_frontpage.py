"""The front page's generated blocks: run times read from results files, the speed table from
bench_meta's, figures with the tally of their claims."""
from fobtheory import frontpage, ledger
from fobtheory.experiments import bench_meta
from fobtheory.results import claim, make_results, write_json_atomic


def test_run_time_is_a_campaigns_training_or_the_commands_wall_time():
    plain = make_results("x", {}, [], {"seconds": 4000.0}, [])
    assert frontpage.run_time(plain) == "67 min" and frontpage.run_time(None) == "-"
    runs = [dict(kind="final", seconds_per_step=0.5, meta_steps=3600), dict(kind="final", seconds_per_step=1.5)]
    campaign = make_results("x", {"meta_steps": 2400}, runs, {"seconds": 12.0}, [])  # 0.5 h + 1 h
    assert frontpage.run_time(campaign) == "1.5 process-hours of training (resumable), then 12 s"
    stated = make_results("x", {}, runs, {"seconds": 3.0, "process_hours": 7.25}, [])  # the summary's own, first
    assert frontpage.run_time(stated).startswith("7.2 process-hours")


def test_blocks_come_from_the_results_folder(tmp_path):
    write_json_atomic(tmp_path / "bias_rates.json",
                      make_results("bias_rates", {}, [], {"seconds": 7.0}, [claim("a", "s", "e", "m", "confirmed"),
                                                                         claim("b", "s", "e", "m", "refuted")]))
    (tmp_path / "bias_rates.png").write_bytes(b"png")
    rows = ledger.collect(tmp_path)
    blocks = frontpage.blocks(tmp_path, rows)
    assert ('| <a href="figures/bias_rates.png"><img src="figures/bias_rates.png" alt="bias_rates.png" '
            f'width="{frontpage.THUMBNAIL}"></a> | 1 confirmed, 1 refuted |') in blocks["figures"]
    assert "| `fobtheory bias` |" in blocks["commands"] and "| 7 s |" in blocks["commands"]
    assert "| `fobtheory demo` |" in blocks["commands"] and "| `fobtheory paired` |" in blocks["commands"]
    assert blocks["bench"].startswith("No bench_meta.json")
    assert blocks["kinkcheck"].startswith("No bench/kink_check_cost.json")
    rows_ = [dict(method=m, tasks=t, ms=10.0 * t, plain_ms=20.0 * t, ratio=0.5 if t == 1 else 0.25)
             for m in ("maml", "maml_hvp", "fob_symmetric") for t in (1, 8)]
    config = dict(width=64, activation="elu", inner_steps=5, meta_batch=8, rounds=3, threads=1)
    write_json_atomic(tmp_path / "bench_meta.json", bench_meta.results(rows_, config, 1.0))
    speed = frontpage.speed_markdown(tmp_path)
    assert bench_meta.table([{k: v for k, v in r.items()} for r in rows_]) in speed
    assert "One task: 0.50x to 0.50x" in speed and "HVP-MAML takes 1.00x MAML's time" in speed


def test_kink_check_block_is_the_committed_benchmark():
    from pathlib import Path

    from fobtheory.experiments import bench_kink_check
    from fobtheory.results import load_results

    folder = Path(__file__).resolve().parents[1] / "figures"
    results = load_results(folder / f"{frontpage.KINK_CHECK_COST}.json")
    text = frontpage.kink_check_markdown(folder)
    assert bench_kink_check.table(results["records"]) in text
    assert f"at most {results['summary']['max_check_time_ratio']:.2f}x the unchecked time" in text
