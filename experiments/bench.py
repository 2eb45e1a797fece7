"""Wall-clock time of each experiment's quick and default runs, printed as a table.

    python -m fobtheory.experiments.bench [bias smoothness ...] [--modes quick default]

Outputs go to a temporary folder: the committed figures are not touched. Times depend on
the machine and its load; compare them with the budgets of the issues on a quiet machine.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from . import COMMANDS, execute


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commands", nargs="*", default=None, help=f"among {list(COMMANDS)} (default: all)")
    parser.add_argument("--modes", nargs="+", default=["quick", "default"], choices=["quick", "default"])
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for command in args.commands or list(COMMANDS):
            for mode in args.modes:
                start = time.perf_counter()
                execute(command, quick=mode == "quick", out=out, echo=lambda *_: None)
                rows.append((command, mode, time.perf_counter() - start))
                print(f"{command:<12} {mode:<8} {rows[-1][2]:8.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
