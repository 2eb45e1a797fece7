"""Campaigns: many independent runs, each committing one small JSON, on any executor.

A campaign is a list of :class:`Job` (its *units*) and a summary of their results. Each job
names its result file, ``<root>/<run key>/<name>.json`` (:func:`run_key` hashes what shapes
the run's numbers), and the top-level function that computes the unit and commits its result
there (:func:`commit`: atomic, so a reader sees a whole file or none). A committed unit is
skipped, so a campaign resumes after an interruption, and several machines can share one
through the committed folder. Executors (:data:`EXECUTORS`):

- ``serial``: in this process, one progress bar over the units' steps (tests, debugging);
- ``local``: ``workers`` spawned processes of the standard library's
  :class:`concurrent.futures.ProcessPoolExecutor` (the default of the campaign commands);
- ``slurm``: a SLURM job array through submitit, at most ``workers`` jobs at once; the
  results land in the committed folder, which must be on a file system the nodes share;
- ``submitit-local``: submitit's local executor, the ``slurm`` code path on one machine
  (every unit its own process, all at once: for tests and small campaigns).

A file that exists but cannot be read is *broken*: every reader names it and says to delete
it (:class:`DamagedResult`), plans list it apart, and no executor starts while one is there.

Interrupting a campaign leaves nothing running: ``local`` workers die with the process that
started them, however it ends (SIGKILL too); SIGINT (Ctrl-C) and SIGTERM stop the ``serial``
and ``local`` executors, kill the workers, and raise :class:`Interrupted` (the commands: one
line, exit status 128 + the signal). A unit stopped mid-write leaves no result, at worst a
hidden temporary file, deleted by a later run once stale.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import multiprocessing
import numbers
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, NamedTuple

from .progress import track
from .results import DamagedResult, read_json, remove_stale_temporaries, write_json_atomic

EXECUTORS = ("serial", "local", "slurm", "submitit-local")
STATES = ("committed", "broken", "pending")


def run_key(version: int, entries: dict) -> str:
    """``v<version>-<12 hex>``: the hash of ``entries`` (JSON, sorted keys), the settings that
    shape a run's numbers."""
    return f"v{version}-{hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:12]}"


class Job(NamedTuple):
    """One unit: ``fn(*args, progress=...)`` computes it and commits its result at ``path``.

    ``fn`` is a module-level function (workers import it); ``progress`` is a tqdm-like
    counter in the serial executor and None elsewhere; ``steps`` its units of work there;
    ``stage`` what a plan prints before the unit; ``done`` (optional, module-level, called
    with ``args``) adds a condition besides the committed file (weights a later step needs)."""

    path: Path
    fn: Callable
    args: tuple = ()
    stage: str = ""
    steps: int = 1
    done: Callable | None = None

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"


def read(path) -> dict | None:
    """The committed result at ``path``, or None when there is none; a file that cannot be
    read raises :class:`DamagedResult` naming it."""
    path = Path(path)
    return read_json(path) if path.exists() else None


def commit(path, result: dict, folder_info: dict | None = None) -> dict:
    """Write ``result`` atomically at ``path``, and ``folder_info`` as the folder's
    ``config.json`` if it has none yet; returns the result as read back."""
    path = Path(path)
    if folder_info is not None and not (path.parent / "config.json").exists():
        write_json_atomic(path.parent / "config.json", folder_info)
    write_json_atomic(path, result)
    return read_json(path)


def status(job: Job) -> str:
    """``committed``, ``broken`` (the file cannot be read) or ``pending``."""
    try:
        result = read(job.path)
    except DamagedResult:
        return "broken"
    return "committed" if result is not None and (job.done is None or job.done(*job.args)) else "pending"


def by_status(jobs) -> dict[str, list[Job]]:
    """``{state: [job]}`` for every state of :data:`STATES`."""
    out = {s: [] for s in STATES}
    for j in jobs:
        out[status(j)].append(j)
    return out


def pending(jobs) -> list[Job]:
    return by_status(jobs)["pending"]


def refuse_broken(jobs) -> None:
    """Raise :class:`DamagedResult` naming every broken result among ``jobs``."""
    broken = by_status(jobs)["broken"]
    if broken:
        raise DamagedResult(f"{len(broken)} result file(s) cannot be read: {', '.join(str(j.path) for j in broken)}; "
                            "delete them, and they will be recomputed")


def describe(jobs, seconds: Callable[[Job], float] | None = None, root=None,
             other: tuple[str, Callable[[Job], float]] | None = None) -> str:
    """The plan as text: counts, the broken files, and each pending unit (stage, run key and
    name, estimated minutes), with the process-hours of the pending units when ``seconds``
    (estimated process-seconds of a job) is given, and those of a second estimate ``other``
    = (what it is, its seconds) beside them."""
    groups = by_status(jobs)
    lines = [f"{len(jobs)} units: {len(groups['committed'])} committed, {len(groups['broken'])} broken, "
             f"{len(groups['pending'])} pending" + (f" (results under {root})" if root else "")]

    def hours(estimate):
        return sum(estimate(j) for j in groups["pending"]) / 3600

    if seconds is not None:
        lines.append(f"pending units: {hours(seconds):.2f} process-hours on this machine (one unit per process)"
                     + (f"; {hours(other[1]):.2f} {other[0]}" if other else ""))
    if groups["broken"]:
        lines.append("broken (cannot be read; delete each, and it will be recomputed):")
        lines += [f"  {j.path}" for j in groups["broken"]]
    lines += [f"  {j.stage:<13} {j.name}" + (f"  (~{seconds(j) / 60:.0f} min)" if seconds else "")
              for j in groups["pending"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# executors


class Interrupted(KeyboardInterrupt):
    """A campaign stopped by SIGINT (Ctrl-C) or SIGTERM: its workers ended, its committed units
    kept, so rerunning the command resumes it; ``status`` is the exit status, 128 + the signal."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum, self.status = signum, 128 + signum


SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _interruptible():
    """In the body, SIGINT and SIGTERM raise :class:`Interrupted`, once (a second one waits
    for the cleanup); the previous handlers come back after it. Off the main thread, where
    Python takes no handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with(parent: int) -> None:
    """End this process when process ``parent`` (its parent) ends, however it ends: SIGKILL,
    which nothing can catch, included.

    On Linux the kernel kills it, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; the signal comes when
    the *thread* that started this process ends, here :func:`run_jobs`'s, which outlives its
    workers. Elsewhere, or if prctl fails, :func:`_watch_parent` polls. A parent gone before
    the call is caught by the check that follows it."""
    if not (sys.platform.startswith("linux")
            and ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0):
        _watch_parent(parent)
    if os.getppid() != parent:
        os._exit(1)


def _watch_parent(parent: int, every: float = 1.0) -> None:
    """A daemon thread that ends this process (``os._exit(1)``) once its parent is no longer
    ``parent``, checking every ``every`` seconds (POSIX: another process adopts an orphan;
    not on Windows, where ``os.getppid`` keeps the dead parent's id)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _start_worker(parent: int, threads: int) -> None:
    """A local worker's first act: end with ``parent`` (:func:`_die_with`), leave Ctrl-C to
    the parent (which ends the workers), run ``threads`` torch threads."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_threads(threads)


def _set_threads(threads: int):
    """``threads`` torch threads in this process: at once if torch is loaded, else through the
    variables it reads when it loads (a worker does not load torch for units that need none)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _perform(job: Job, threads: int | None = None) -> float:
    """Run one job in a worker (``threads`` torch threads); returns its seconds."""
    if threads:
        _set_threads(threads)
    start = time.perf_counter()
    job.fn(*job.args, progress=None)
    return time.perf_counter() - start


def run_jobs(jobs, *, executor: str = "local", workers: int = 1, threads: int = 1, options: dict | None = None,
             folder=None, echo=print, desc: str = "campaign") -> list[str]:
    """Run the pending ``jobs`` on ``executor``; returns the names of the jobs that failed
    (the others finish first). ``options``: submitit parameters (``timeout_min``,
    ``slurm_partition``, ``gpus_per_node``, ...); ``folder``: submitit's logs (default
    ``<cache>/submitit``). SIGINT or SIGTERM stops the ``serial`` and ``local`` executors:
    :class:`Interrupted`, saying how many units are committed, once the workers are dead.
    Temporary files that killed writers left beside the results are deleted once stale
    (:func:`fobtheory.results.remove_stale_temporaries`)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    for name, value in (("workers", workers), ("threads", threads)):
        if not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    jobs = list(jobs)
    refuse_broken(jobs)
    todo = pending(jobs)
    if not todo:
        return []
    for results in sorted({j.path.parent for j in todo}):
        remove_stale_temporaries(results)
    if executor not in ("serial", "local"):
        return _submitit(todo, executor, workers, threads, options or {}, folder, echo, desc)
    try:
        with _interruptible():
            if executor == "local":
                return _run_local(todo, workers, threads, echo, desc)
            with track(total=sum(j.steps for j in todo), desc=desc, unit="step") as bar:
                for j in todo:
                    bar.set_postfix_str(j.name)
                    j.fn(*j.args, progress=bar)
            return []
    except Interrupted as stop:
        committed = sum(j.path.exists() for j in jobs)
        raise Interrupted(stop.signum, f"interrupted by {signal.Signals(stop.signum).name}: {committed} of "
                                       f"{len(jobs)} units committed, the running ones stopped unwritten; "
                                       "rerun the same command to resume") from None


def _run_local(todo, workers, threads, echo, desc) -> list[str]:
    """``todo`` on ``workers`` spawned processes (CUDA cannot be forked) that end with this
    one (:func:`_start_worker`); any exception here, an interruption included, kills them
    before it goes on (a unit stopped mid-write leaves no result: commits are atomic)."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), threads))
    try:
        futures = {pool.submit(_perform, j): j for j in todo}
        return _collect(as_completed(futures), futures, lambda f: f.result(), len(todo), echo, desc)
    except BaseException:
        for process in list(pool._processes.values()):  # the standard library's own table of workers
            process.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _collect(finished, jobs_of, result_of, total, echo, desc) -> list[str]:
    failed = []
    for handle in track(finished, total=total, desc=desc, unit="run"):
        job = jobs_of[handle]
        try:
            echo(f"done {job.name} in {result_of(handle):.0f} s")
        except Exception as err:  # noqa: BLE001 (report, and let the other units finish)
            failed.append(job.name)
            echo(f"FAILED {job.name}: {type(err).__name__}: {err}")
    return failed


def _submitit(todo, executor, workers, threads, options, folder, echo, desc) -> list[str]:
    try:
        import submitit
    except ImportError:
        raise ValueError(f"executor {executor!r} needs submitit: pip install 'fobtheory[cluster]'") from None
    from .data import cache_dir

    folder = Path(folder) if folder is not None else cache_dir() / "submitit"
    cluster = "local" if executor == "submitit-local" else "slurm"
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    ex.update_parameters(**{"timeout_min": 24 * 60, "cpus_per_task": threads, "slurm_array_parallelism": workers,
                            **options})
    with ex.batch():  # one job array on SLURM
        handles = [ex.submit(_perform, j, threads) for j in todo]
    echo(f"submitted {len(handles)} job(s) to {cluster} (logs in {folder})")
    poll = 1.0 if cluster == "local" else 30.0
    return _collect(submitit.helpers.as_completed(handles, poll_frequency=poll), dict(zip(handles, todo)),
                    lambda h: h.result(), len(todo), echo, desc)


def complete(jobs: Callable[[], list[Job]], *, batch: Callable[[list[Job]], list[Job]] | None = None,
             **run_options) -> list[str]:
    """Run ``jobs()``'s pending units until none is left (a finished stage may add units:
    ``jobs`` is asked again after each batch); ``batch`` picks which pending units go next
    (default: all). Returns the failed units' names, stopping at the first failed batch; a
    broken result among ``jobs()`` stops it before any work (:func:`refuse_broken`)."""
    while True:
        every = jobs()
        refuse_broken(every)
        todo = pending(every)
        if not todo:
            return []
        failed = run_jobs(batch(todo) if batch else todo, **run_options)
        if failed:
            return failed


def add_options(p: argparse.ArgumentParser, executor: str | None = "local", workers: int | None = 2,
                threads: int | None = 1) -> argparse.ArgumentParser:
    """The executor options of a campaign command: ``--executor``, ``--workers``, ``--threads``,
    ``--cluster-option KEY=VALUE`` (a default of None: the experiment's configuration decides);
    a count below 1 is refused as the command line is read."""
    from .cli import integer_at_least

    def default(value):
        return f"default {value}" if value is not None else "default: the configuration's"

    p.add_argument("--executor", choices=EXECUTORS, default=executor,
                   help="where the units run: serial (this process), local (worker processes), slurm (a submitit "
                        f"job array), submitit-local (submitit on this machine); {default(executor)}")
    p.add_argument("--workers", type=integer_at_least(1), default=workers,
                   help=f"processes or jobs at once, >= 1 ({default(workers)})")
    p.add_argument("--threads", type=integer_at_least(1), default=threads,
                   help=f"torch threads per worker, >= 1 ({default(threads)})")
    p.add_argument("--cluster-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a submitit parameter, e.g. slurm_partition=gpu, timeout_min=120, gpus_per_node=1")
    return p


def cluster_options(pairs) -> dict:
    """``["k=v", ...]`` as a dict, numbers parsed (``--cluster-option``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--cluster-option must be KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def command(name: str, body: Callable[[], str | None]) -> int:
    """Exit status of a campaign entry point: ``body()`` plans or trains and returns its last
    line (None: nothing to add); a bad value (ValueError) ends it with status 2, a failed unit
    (RuntimeError) with 1, an interruption (:class:`Interrupted`) with 128 + the signal, each
    with one line on stderr."""
    try:
        last = body()
    except Interrupted as err:
        print(f"{name}: {err}", file=sys.stderr)
        return err.status
    except ValueError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    if last:
        print(last)
    return 0


def failure(failed: list[str]) -> str:
    return f"{len(failed)} unit(s) failed: {', '.join(failed)}"
