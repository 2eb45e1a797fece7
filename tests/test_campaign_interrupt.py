"""Interrupting a campaign leaves nothing running, on real process trees: the local
executor's workers end with their parent however it ends (SIGKILL, SIGTERM, Ctrl-C), a unit
stopped mid-write leaves no result file, and rerunning the command resumes to the results
of an uninterrupted run, byte for byte."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_units import HELD, UNITS, command, jobs, result, values_of

from fobtheory import campaign

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process trees from /proc")


def _start(folder, log) -> subprocess.Popen:
    """The command, in a session of its own (a terminal's foreground group), stderr to ``log``."""
    with open(log, "w") as err:  # a file, not a pipe: the workers inherit it
        return subprocess.Popen(command(folder), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _stat(pid: int) -> list[str] | None:
    """``[state, ppid, ...]`` from /proc/<pid>/stat, None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX"  # a zombie has ended


def _descendants(root: int) -> set[int]:
    parent = {int(p.name): int(s[1]) for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
    tree, grew = set(), True
    while grew:
        new = {pid for pid, ppid in parent.items() if (ppid == root or ppid in tree) and pid not in tree}
        tree |= new
        grew = bool(new)
    return tree


def _within(seconds, condition) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_an_interrupted_campaign_leaves_no_process_and_resumes_to_the_uninterrupted_results(tmp_path, how):
    folder, log = tmp_path / "campaign", tmp_path / "stderr"
    units = jobs(folder)
    (folder / "hold").touch()
    parent = _start(folder, log)
    tree = set()
    try:
        assert _within(120, lambda: all((folder / f"held-{i}").exists() for i in HELD) or parent.poll() is not None)
        assert parent.poll() is None, log.read_text()
        tree = _descendants(parent.pid)  # the two workers, and the standard library's resource tracker
        workers = {int(p.name) for p in (folder / "pids").iterdir()}
        assert len(workers) == 2 and workers <= tree
        if how == "Ctrl-C":  # the terminal signals the whole foreground group
            os.killpg(parent.pid, signal.SIGINT)
        else:
            os.kill(parent.pid, getattr(signal, how))
        status = parent.wait(timeout=30)
        assert _within(5, lambda: not any(_alive(p) for p in tree)), [(p, _stat(p)) for p in tree if _alive(p)]
    finally:  # a failed test leaves nothing behind either
        for pid in [parent.pid, *tree]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    signum = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "Ctrl-C": signal.SIGINT}[how]
    if how == "SIGKILL":
        assert status == -signal.SIGKILL
    else:  # one line, what was interrupted and what to do
        assert status == 128 + signum and log.read_text() == (
            f"campaign: interrupted by {signum.name}: 2 of {UNITS} units committed, the running ones stopped "
            "unwritten; rerun the same command to resume\n")

    # the unit stopped mid-write left its temporary file, never its result
    temporary = list(result(folder, 3).parent.glob(".u3.json.*.tmp"))
    assert len(temporary) == 1 and campaign.read(temporary[0]) == {"index": 3, "values": values_of(3)}
    assert [campaign.status(j) for j in units] == ["committed"] * 2 + ["pending"] * (UNITS - 2)
    kept = {i: result(folder, i).stat() for i in (0, 1)}
    a_day_ago = time.time() - 86400
    os.utime(temporary[0], (a_day_ago, a_day_ago))  # as stale as one left by a campaign killed yesterday

    # rerunning the command resumes: committed units untouched, the rest computed, the stale file gone
    (folder / "hold").unlink()
    assert _start(folder, log).wait(timeout=120) == 0, log.read_text()
    assert not temporary[0].exists() and not list(result(folder, 3).parent.glob(".*.tmp"))
    assert all(result(folder, i).stat().st_mtime_ns == kept[i].st_mtime_ns for i in kept)
    reference = tmp_path / "uninterrupted"
    assert campaign.run_jobs(jobs(reference), executor="serial") == []
    assert [result(folder, i).read_bytes() for i in range(UNITS)] == \
        [result(reference, i).read_bytes() for i in range(UNITS)]


def _orphan_code(watch: str) -> str:
    """A middle process that starts a child running ``watch`` (with the middle's pid in
    ``parent``), prints the child's pid, and waits."""
    child = f"import os, time; from fobtheory import campaign; parent = os.getppid(); {watch}; " \
            "print('ready', flush=True); time.sleep(300)"
    return ("import subprocess, sys, time\n"
            f"c = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE, text=True)\n"
            "assert c.stdout.readline() == 'ready\\n'\n"
            "print(c.pid, flush=True)\n"
            "time.sleep(300)\n")


@pytest.mark.parametrize("watch", ["campaign._die_with(parent)", "campaign._watch_parent(parent, every=0.1)"],
                         ids=["prctl", "polling fallback"])
def test_a_worker_ends_when_its_parent_is_killed(watch):
    """Both guards, the kernel's (Linux) and the polling thread (elsewhere), on Linux."""
    middle = subprocess.Popen([sys.executable, "-c", _orphan_code(watch)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    child = None
    try:
        child = int(middle.stdout.readline())
        assert _alive(child)
        middle.kill()
        middle.wait()
        assert _within(5, lambda: not _alive(child))
    finally:
        for pid in (middle.pid, child):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_whose_parent_is_already_gone_ends_at_once():
    """The race of prctl: a parent that died before the call is caught by the check after it."""
    out = subprocess.run([sys.executable, "-c", "from fobtheory import campaign; import os; "
                          "campaign._die_with(os.getppid() + 1); print('still here')"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "still here" not in out.stdout


def test_only_stale_temporary_files_are_removed(tmp_path):
    """Another process may be writing a young one now; results and other files stay."""
    from fobtheory.results import remove_stale_temporaries, write_json_atomic

    write_json_atomic(tmp_path / "u0.json", {"index": 0})
    stale, young, other = tmp_path / ".u1.json.abc.tmp", tmp_path / ".u2.json.def.tmp", tmp_path / "notes.tmp"
    for path in (stale, young, other):
        path.write_text("{")
    an_hour_ago = time.time() - 3600
    for path in (stale, other):
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".u2.json.def.tmp", "notes.tmp", "u0.json"]
