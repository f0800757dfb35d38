"""The CLI's contract: help lists the commands, a bad argument prints usage and exits 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from publisher.cli import main


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` shows every registered command."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])

    assert info.value.code == 0
    assert "stack" in capsys.readouterr().out


def test_bad_argument_prints_usage_and_exits_2() -> None:
    """An invalid choice exits 2 with usage on stderr and no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "publisher", "stack", "sideways"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr
