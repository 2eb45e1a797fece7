"""The two README commands on a fresh machine: a clean clone, a new virtual environment with
nothing but Python. Slow (installs everything): `python -m pytest -m slow tests/test_fresh_machine.py -s`."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    main = re.search(r"```bash\n(.*fobtheory reproduce --quick.*?)\n```", text).group(1)
    tests = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", text, re.S).group(1)
    return main, tests


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to clone the repository")
def test_readme_commands_work_in_a_new_virtual_environment(tmp_path):
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)
    timings = {}
    # the CPU build of torch first, as .ci/run does (a plain requirement pulls a CUDA build)
    steps = [("torch", "python -m pip install -q torch==2.13.0"), *zip(("main job", "tests"), readme_commands())]
    for name, command in steps:
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True)
        timings[name] = time.perf_counter() - start
        assert done.returncode == 0, f"{name}: `{command}` failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (clone / "runs" / "quick" / "CLAIMS.md").exists()
    assert sorted(p.name for p in (clone / "runs" / "quick").glob("*.json")) == \
        ["bias_rates.json", "memory.json", "memory_scale.json", "mnist1d.json", "mnist1d_fidelity.json",
         "mnist1d_select.json", "optimize.json", "smoothness.json"]
    print("fresh machine:", ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
