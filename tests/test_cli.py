import signal
import subprocess
import sys

import pytest

from fobtheory import progress
from fobtheory.cli import build_parser, main
from fobtheory.results import claim, make_results, write_json_atomic


def test_demo_prints_the_error_table(capsys):
    assert main(["demo", "--seed", "1", "--dim", "4"]) == 0
    out = capsys.readouterr().out
    assert "fob_maml symmetric" in out and "fo_maml" in out and "reptile" in out


def test_bad_input_exits_with_a_message(capsys):
    assert main(["demo", "--inner-steps", "0"]) == 2
    assert "inner_steps must be an integer >= 1" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "fobtheory.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout


def test_the_main_job_needs_no_test_dependencies():
    """`pip install .` has no hypothesis or pytest: nothing outside fobtheory.testing may need them."""
    code = ("import sys; sys.modules['hypothesis'] = sys.modules['pytest'] = None\n"
            "import fobtheory.cli, fobtheory.experiments as e\n"
            "for command in e.COMMANDS: e.module(command)\n"
            "fobtheory.cli.main(['demo', '--dim', '3'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _error_line(capsys, argv, run=main) -> tuple[int, str]:
    """Exit status and stderr of `fobtheory argv` (or of another command's ``run``); the
    error must be one line, no traceback."""
    try:
        status = run(argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return status, err


@pytest.mark.parametrize("argv, option, valid", [
    (["memory", "--quick", "--device", "tpu"], "--device", "cuda:N"),
    (["reproduce", "--quick", "--device", "cuda:x"], "--device", "cuda:N"),
    (["mnist1d", "--quick", "--device", "cuda:99"], "--device", "cuda"),  # no GPU, or not that many
    (["bias", "--seed", "abc"], "--seed", ">= 0"),
    (["bias", "--seed", "-1"], "--seed", ">= 0"),
    (["bias", "--progress", "--no-progress"], "--no-progress", "not allowed"),
    (["bias", "--quick", "--outt", "x"], "--outt", "unrecognized"),
])
def test_bad_options_end_in_one_line_naming_the_option(capsys, argv, option, valid):
    status, err = _error_line(capsys, argv)
    assert status == 2 and option in err and valid in err


@pytest.mark.parametrize("option", ["--workers", "--threads"])
@pytest.mark.parametrize("value", ["0", "-1", "-2", "two"])
def test_worker_and_thread_counts_below_one_end_in_one_line_as_the_command_line_is_read(capsys, option, value):
    from fobtheory.cli import CAMPAIGNS
    from fobtheory.experiments import mnist1d_select, run_parallel

    commands = [(f"fobtheory {c}", [c, option, value], main) for c in CAMPAIGNS]
    commands += [(f"python -m {m.__name__}", [option, value], m.main) for m in (run_parallel, mnist1d_select)]
    for prog, argv, run in commands:
        status, err = _error_line(capsys, argv, run)
        assert status == 2 and err.startswith(f"{prog}: error: argument {option}: must be an integer >= 1, "
                                              f"got {value!r}"), err
    assert vars(build_parser().parse_args(["select", option, "3"]))[option[2:]] == 3


@pytest.mark.parametrize("command", ["bias", "reproduce"])
def test_an_out_folder_that_cannot_be_made_is_refused_before_running(capsys, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in (blocker / "sub", blocker):  # under a regular file; a regular file
        status, err = _error_line(capsys, [command, "--quick", "--out", str(out)])
        assert status == 2 and "--out" in err and str(out) in err
    assert sorted(tmp_path.iterdir()) == [blocker]  # nothing ran, nothing written


def test_a_missing_readme_is_refused_before_the_ledger_is_written(capsys, tmp_path):
    results = make_results("alpha", {}, [], {}, [claim("a", "s", "e", "m", "confirmed")])
    write_json_atomic(tmp_path / "alpha.json", results)
    for option in ("--readme", "--docs"):
        status, err = _error_line(capsys, ["claims", "--out", str(tmp_path), option, str(tmp_path / "missing.md")])
        assert status == 2 and option in err and "missing.md" in err
    assert not (tmp_path / "CLAIMS.md").exists()


def test_quick_results_go_into_a_readme_only_when_forced(capsys, tmp_path):
    from fobtheory import ledger

    write_json_atomic(tmp_path / "alpha.json",
                      make_results("alpha", {}, [], {"quick": True}, [claim("a", "s", "e", "m", "confirmed")]))
    readme = tmp_path / "README.md"
    readme.write_text(f"{ledger.START}\nthe committed verdicts\n{ledger.END}\n")
    status, err = _error_line(capsys, ["claims", "--out", str(tmp_path), "--readme", str(readme)])
    assert status == 2 and "quick results (alpha.json)" in err and "--force" in err
    assert "the committed verdicts" in readme.read_text() and not (tmp_path / "CLAIMS.md").exists()
    assert main(["claims", "--out", str(tmp_path), "--readme", str(readme), "--force"]) == 0
    assert "the committed verdicts" not in readme.read_text()


def test_the_console_reports_the_issue_cases_without_traceback(tmp_path):
    (tmp_path / "f").write_text("")
    for args, option in ((["memory", "--quick", "--device", "tpu"], "--device"),
                         (["bias", "--quick", "--out", str(tmp_path / "f" / "out")], "--out"),
                         (["select", "--threads", "-2"], "--threads")):
        out = subprocess.run([sys.executable, "-m", "fobtheory.cli", *args], capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and option in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_an_interrupted_campaign_ends_in_one_line_and_the_status_of_its_signal(capsys, monkeypatch):
    from fobtheory.campaign import Interrupted

    def interrupted(args):
        raise Interrupted(signal.SIGTERM, "interrupted by SIGTERM: 2 of 6 units committed; rerun to resume")

    monkeypatch.setattr("fobtheory.cli.experiment", interrupted)
    status, err = _error_line(capsys, ["select", "--quick"])
    assert status == 128 + signal.SIGTERM and err == "fobtheory select: interrupted by SIGTERM: 2 of 6 units " \
                                                     "committed; rerun to resume\n"


def test_progress_flags_go_before_or_after_the_command():
    parse = build_parser().parse_args
    assert parse(["demo"]).progress == "auto"
    assert parse(["--no-progress", "demo"]).progress == "off" and parse(["demo", "--no-progress"]).progress == "off"
    assert parse(["--progress", "bias"]).progress == "bar" and parse(["bias", "--progress"]).progress == "bar"


def test_main_sets_the_progress_mode_for_the_command_only(monkeypatch):
    seen = []
    monkeypatch.setattr("fobtheory.cli.demo", lambda args: seen.append(progress.MODE) or 0)
    assert main(["demo", "--no-progress"]) == 0 and seen == ["off"] and progress.MODE == "auto"
