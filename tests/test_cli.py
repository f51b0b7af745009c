import subprocess
import sys

import pytest

from continuum_attention.cli import main


def test_info_prints_versions_and_threads(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "numba threads" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["reproduce", "--only", "no-such-study"], "unknown study 'no-such-study'"),
        (["reproduce", "--workers", "0"], "--workers must be >= 1"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_errors_are_one_line_with_status_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_console_script_exit_status():
    proc = subprocess.run(
        [sys.executable, "-m", "continuum_attention.cli", "reproduce", "--quick", "--full"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
