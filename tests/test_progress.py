"""Progress output: plain lines off a terminal, tqdm's bar on one, nothing when off."""
import io
import subprocess
import sys

import pytest

from fobtheory import progress
from fobtheory.progress import track


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def auto_mode():
    previous = progress.set_mode("auto")
    yield
    progress.set_mode(previous)


def test_off_a_terminal_each_finished_item_is_one_line():
    log, done = io.StringIO(), []
    for i in track(range(5), desc="work", unit="job", file=log):
        assert log.getvalue().count("\n") == len(done)  # the line comes once the item is finished
        done.append(i)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 5
    assert [line.split(",")[0] for line in lines] == [f"work: {k}/5 job" for k in range(1, 6)]


def test_a_manual_counter_prints_a_line_per_finished_unit():
    """The mnist1d pattern: a postfix names the unit in progress, update() counts its steps."""
    log = io.StringIO()
    with track(total=30, desc="steps", unit="step", file=log) as bar:
        for run in ("a", "b", "c"):
            bar.set_postfix_str(f"run {run}")
            for _ in range(10):
                bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert [(line.split(",")[0], line.rsplit("[", 1)[1]) for line in lines] == [
        ("steps: 10/30 step", "run a]"), ("steps: 20/30 step", "run b]"), ("steps: 30/30 step", "run c]")]


def test_long_units_also_report_every_interval():
    log = io.StringIO()
    lines = progress.Lines(total=4, desc="slow", file=log, interval=0.0)
    for _ in range(4):
        lines.update(1)
    lines.close()  # nothing new since the last line: no repeat
    assert log.getvalue().count("\n") == 4


def test_on_a_terminal_the_bar_is_tqdm_and_off_prints_nothing():
    screen = Terminal()
    list(track(range(3), desc="work", file=screen))
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue()
    for mode, stream in (("off", Terminal()), ("off", io.StringIO())):
        progress.set_mode(mode)
        assert list(track(range(3), desc="work", file=stream)) == [0, 1, 2]
        with track(total=2, file=stream) as bar:
            bar.update(2)
            bar.set_postfix_str("x")
        assert stream.getvalue() == ""
    progress.set_mode("bar")  # --progress: the bar even in a log
    log = io.StringIO()
    list(track(range(3), desc="work", file=log))
    assert "\r" in log.getvalue()


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="progress mode must be one of"):
        progress.set_mode("verbose")


def test_an_experiment_logged_to_a_file_has_plain_progress_lines(tmp_path):
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        out = subprocess.run([sys.executable, "-m", "fobtheory.cli", "smoothness", "--quick", "--out", str(tmp_path)],
                             stdout=f, stderr=subprocess.STDOUT)
    text = log.read_text()
    assert out.returncode == 0 and "\r" not in text
    assert "smoothness quadratic: 2/2 task" in text and "smoothness mlp: 1/2 task" in text
