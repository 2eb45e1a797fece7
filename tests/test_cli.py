import subprocess
import sys

from fobtheory.cli import main


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
