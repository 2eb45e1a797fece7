"""Progress output that suits a terminal and a log file alike.

Modes: ``bar`` draws tqdm's bar (carriage-return frames: right on a terminal, a flood in a
log); ``lines`` prints one plain line per finished unit of work; ``off`` prints nothing.
``auto`` (the default) picks ``bar`` when the output stream is a terminal, else ``lines``.
The CLI sets the mode with ``--progress`` (bar) and ``--no-progress`` (off).

:func:`track` stands in for ``tqdm(...)``: iterate over it, or use it as a manual counter
(``total=``, ``update(n)``, ``set_postfix_str(s)``, ``close()``, a context manager).
"""
from __future__ import annotations

import sys
import time

MODES = ("auto", "bar", "lines", "off")
MODE = "auto"


def set_mode(mode: str) -> str:
    """Set the module-wide mode; returns the previous one."""
    global MODE
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    previous, MODE = MODE, mode
    return previous


def resolve(file) -> str:
    """The mode in effect for output to ``file``: ``MODE``, with ``auto`` made concrete."""
    if MODE != "auto":
        return MODE
    isatty = getattr(file, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def track(iterable=None, *, desc: str = "", total: int | None = None, unit: str = "it", file=None, **tqdm_kwargs):
    """``tqdm(iterable, desc=..., total=..., unit=...)`` in the mode :func:`resolve` picks for
    ``file`` (default: the current ``sys.stderr``). ``tqdm_kwargs`` (e.g. ``leave``) only
    matter to the bar."""
    file = sys.stderr if file is None else file
    mode = resolve(file)
    if mode == "lines":
        return Lines(iterable, desc=desc, total=total, unit=unit, file=file)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=file, disable=mode == "off", **tqdm_kwargs)


class Lines:
    """tqdm's interface, printing plain lines (never a carriage return): one per item of an
    iterable, once the loop body for it has finished; for a manual counter, one when its
    postfix changes after some progress (the unit the old postfix named is finished), one
    on close, and at most one per ``interval`` seconds of updates in between."""

    def __init__(self, iterable=None, *, desc: str = "", total: int | None = None, unit: str = "it", file=None,
                 interval: float = 60.0):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.file = sys.stderr if file is None else file
        self.interval, self.n, self.postfix = interval, 0, ""
        self.start = self.last_time = time.monotonic()
        self.last_n = 0  # the count the last line reported

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1
            self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last_time >= self.interval:
            self._line()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        if self.n > self.last_n:
            self._line()
        self.postfix = str(s)

    def close(self) -> None:
        if self.n > self.last_n:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        postfix = f" [{self.postfix}]" if self.postfix else ""
        print(f"{self.desc}: {count} {self.unit}, {now - self.start:.1f} s{postfix}", file=self.file, flush=True)
        self.last_n, self.last_time = self.n, now
