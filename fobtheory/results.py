"""Results files: the schema every experiment writes, atomic writes, claims and verdicts.

A results file ``<out>/<name>.json`` holds

    experiment   name
    config       the parameters of the run (enough to rerun it)
    environment  versions, platform, device
    records      flat list of dicts, one per measured point (refit from these)
    summary      fitted numbers
    claims       [{id, statement, expected, measured, verdict}], verdict computed from data
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TOP_LEVEL_KEYS = ("experiment", "config", "environment", "records", "summary", "claims")
CLAIM_KEYS = ("id", "statement", "expected", "measured", "verdict")
VERDICTS = ("confirmed", "refuted", "inconclusive")


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions and machine facts that a reader needs to compare numbers across runs."""
    import scipy
    import torch

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None:
        env["device"] = device
        if device.startswith("cuda") and torch.cuda.is_available():
            env["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
    return env


def claim(id: str, statement: str, expected: str, measured: str, verdict: str) -> dict[str, str]:
    """One claim; ``verdict`` must be computed by the caller from measured numbers."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"id": id, "statement": statement, "expected": expected, "measured": measured, "verdict": verdict}


def claim_line(c: dict) -> str:
    """One claim as the terminal line the commands print: verdict, id, measured."""
    return f"  [{c['verdict']:>12}] {c['id']}: {c['measured']}"


def verdict(supported: bool, contradicted: bool) -> str:
    """``confirmed`` when the data support the claim, ``refuted`` when they contradict it,
    ``inconclusive`` when neither (or, inconsistently, both)."""
    if supported and not contradicted:
        return "confirmed"
    if contradicted and not supported:
        return "refuted"
    return "inconclusive"


def _jsonable(value):
    """numpy scalars and arrays, tuples and non-finite floats made JSON-safe (NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def make_results(experiment: str, config: dict, records: list[dict], summary: dict, claims: list[dict],
                 device: str | None = None) -> dict:
    results = {
        "experiment": experiment,
        "config": config,
        "environment": environment(device),
        "records": records,
        "summary": summary,
        "claims": claims,
    }
    validate_results(results, source=experiment)
    return _jsonable(results)


def validate_results(results: dict, source: str = "results") -> None:
    """Raise ValueError naming ``source`` and the offending field if the schema is wrong."""
    if not isinstance(results, dict):
        raise ValueError(f"{source}: top level must be an object, got {type(results).__name__}")
    missing = [k for k in TOP_LEVEL_KEYS if k not in results]
    if missing:
        raise ValueError(f"{source}: missing top-level field(s) {missing}")
    if not isinstance(results["records"], list) or not all(isinstance(r, dict) for r in results["records"]):
        raise ValueError(f"{source}: field 'records' must be a list of objects")
    for field in ("config", "environment", "summary"):
        if not isinstance(results[field], dict):
            raise ValueError(f"{source}: field '{field}' must be an object")
    if not isinstance(results["claims"], list):
        raise ValueError(f"{source}: field 'claims' must be a list")
    for i, c in enumerate(results["claims"]):
        if not isinstance(c, dict):
            raise ValueError(f"{source}: claims[{i}] must be an object")
        gaps = [k for k in CLAIM_KEYS if k not in c]
        if gaps:
            raise ValueError(f"{source}: claims[{i}] lacks field(s) {gaps}")
        if c["verdict"] not in VERDICTS:
            raise ValueError(f"{source}: claims[{i}].verdict is {c['verdict']!r}, must be one of {VERDICTS}")


def dumps(obj) -> str:
    """JSON indented by level, except that each row of a top-level ``records`` list takes
    one line (results files hold thousands of flat rows)."""
    obj = _jsonable(obj)
    if not (isinstance(obj, dict) and isinstance(obj.get("records"), list) and obj["records"]):
        return json.dumps(obj, indent=1, allow_nan=False)
    mark = "\u0000records\u0000"
    head = json.dumps({**obj, "records": mark}, indent=1, allow_nan=False)
    rows = ",\n  ".join(json.dumps(r, allow_nan=False) for r in obj["records"])
    return head.replace(json.dumps(mark), "[\n  " + rows + "\n ]", 1)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write JSON (:func:`dumps`) so that readers see the old file or the new one, never half of one."""
    return _write_atomic(path, lambda f: f.write(dumps(obj)), "w")


TEMPORARY = (".", ".tmp")  # prefix and suffix of the temporary file of an atomic write


def _write_atomic(path, write, mode: str) -> Path:
    """``write(f)`` into a temporary file beside ``path`` (``.<name>.<random>.tmp``), fsync'd,
    then renamed onto ``path``: a writer killed at any point leaves the old file or the new
    one, and at worst the temporary file (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMPORARY[0]}{path.name}.", suffix=TEMPORARY[1])
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder, older_than: float = 600.0) -> list[Path]:
    """Delete the temporary files that atomic writes into ``folder`` left when their writer
    was killed mid-write, those last modified over ``older_than`` seconds ago (a live write
    takes well under a second; a younger one may be another process's, writing now); returns
    the deleted paths. Nothing reads them as results: they are hidden and end in ``.tmp``."""
    folder, now, gone = Path(folder), time.time(), []
    for tmp in sorted(folder.glob(f"{TEMPORARY[0]}*{TEMPORARY[1]}")):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                gone.append(tmp)
        except FileNotFoundError:  # removed meanwhile by another process
            pass
    return gone


def save_figure(fig, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Save a matplotlib figure atomically as PNG (no timestamps: same data, same bytes)."""
    return _write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi, metadata={"Software": None}), "wb")


class DamagedResult(ValueError):
    """A results file that exists but cannot be read; the message names it and says what to do."""


def read_json(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; a file that is empty, truncated, not UTF-8 or not an object
    raises :class:`DamagedResult` naming it: delete it, and it will be recomputed."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problem = "empty" if path.stat().st_size == 0 else f"not valid JSON ({err})"
    else:
        if isinstance(obj, dict):
            return obj
        problem = f"a JSON {type(obj).__name__}, not an object"
    raise DamagedResult(f"{path}: damaged result file, {problem}; delete it, and it will be recomputed")


def load_results(path: str | os.PathLike) -> dict:
    """Read and validate a results file (:func:`read_json`)."""
    results = read_json(path)
    validate_results(results, source=str(path))
    return results
