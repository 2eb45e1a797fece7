import json

import numpy as np
import pytest

from fobtheory.results import claim, load_results, make_results, validate_results, verdict, write_json_atomic


def test_make_results_has_the_schema_and_is_json_safe(tmp_path):
    r = make_results("demo", {"seed": 0}, [{"delta": np.float64(1e-3), "error": float("nan")}],
                     {"slope": np.float32(1.0), "window": (1e-6, 1e-1)},
                     [claim("c1", "s", "1", "1.0", "confirmed")])
    path = write_json_atomic(tmp_path / "demo.json", r)
    back = load_results(path)
    assert back["records"][0]["error"] is None and back["summary"]["window"] == [1e-6, 1e-1]
    assert set(back) == {"experiment", "config", "environment", "records", "summary", "claims"}
    assert "torch" in back["environment"]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.pop("claims"), r"missing top-level field\(s\) \['claims'\]"),
    (lambda r: r.update(records={"a": 1}), r"field 'records' must be a list of objects"),
    (lambda r: r["claims"][0].pop("measured"), r"claims\[0\] lacks field\(s\) \['measured'\]"),
    (lambda r: r["claims"][0].update(verdict="probably"), r"claims\[0\].verdict is 'probably'"),
])
def test_validation_names_the_file_and_the_field(tmp_path, mutate, match):
    r = make_results("x", {}, [], {}, [claim("c", "s", "e", "m", "refuted")])
    mutate(r)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(r))
    with pytest.raises(ValueError, match=f"bad.json: {match}"):
        load_results(path)


def test_claims_and_verdicts():
    assert verdict(True, False) == "confirmed" and verdict(False, True) == "refuted"
    assert verdict(False, False) == verdict(True, True) == "inconclusive"
    with pytest.raises(ValueError, match="verdict must be one of"):
        claim("c", "s", "e", "m", "yes")
    with pytest.raises(ValueError, match="top level must be an object"):
        validate_results([], "f.json")


def test_written_files_are_readable_by_others(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o644
