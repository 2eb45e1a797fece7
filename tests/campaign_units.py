"""The campaign of tests/test_campaign_interrupt.py: units whose workers can be caught
mid-computation or mid-write, and the command that runs them. A module of its own, light to
import (no pytest), since every worker process imports it."""
import os
import sys
import time
from pathlib import Path

import numpy as np

from fobtheory import campaign
from fobtheory.progress import set_mode

UNITS = 6
HELD = {2: "computing", 3: "writing"}  # units that wait, while the file `hold` exists, at that point


def unit(folder, index, progress=None):
    """A test unit: note this process's id, compute a seeded vector, commit it. While
    ``folder/hold`` exists, unit 2 waits before it commits, unit 3 inside its commit (after
    the temporary file is written, before the rename onto the result)."""
    folder = Path(folder)
    (folder / "pids" / str(os.getpid())).touch()
    held = (folder / "hold").exists() and HELD.get(index)
    if held == "computing":
        _wait(folder, index)
    values = values_of(index)
    if held == "writing":
        os.fsync = lambda fd: _wait(folder, index)  # the atomic write fsyncs its temporary file, then renames it
    campaign.commit(result(folder, index), {"index": index, "values": values})


def values_of(index) -> list[float]:
    return np.random.default_rng(index).standard_normal(100).tolist()


def _wait(folder, index):
    (folder / f"held-{index}").touch()
    time.sleep(300)


def result(folder, index) -> Path:
    return Path(folder) / "runs" / f"u{index}.json"


def jobs(folder) -> list[campaign.Job]:
    (Path(folder) / "pids").mkdir(parents=True, exist_ok=True)
    return [campaign.Job(result(folder, i), unit, (str(folder), i)) for i in range(UNITS)]


def drive(folder) -> int:
    """The campaign command of these tests: the units on two local workers."""
    set_mode("off")

    def body():
        failed = campaign.run_jobs(jobs(folder), workers=2)
        return campaign.failure(failed) if failed else None

    return campaign.command("campaign", body)


def command(folder) -> list[str]:
    """The command line that runs :func:`drive` on ``folder``."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                                  f"import {__name__} as c; sys.exit(c.drive({str(folder)!r}))"]
