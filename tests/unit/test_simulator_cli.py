"""`cdr-publisher simulate`: prints its URL first, serves, stops on SIGTERM, exit 2 on bad flags."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests


def test_simulate_prints_its_url_serves_and_stops_on_sigterm() -> None:
    """The first stdout line is a working base URL; SIGTERM ends the process with exit 0."""
    command = [sys.executable, "-m", "publisher", "simulate", "--port", "0", "--seed", "3"]
    command += ["--faults", "casing=0.2,duplicates=0.05", "--home-region", "localhost"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            with requests.get(f"{url}/_sim/stats", timeout=10) as reply:
                stats = reply.json()
            with requests.get(f"{url}/_sim/faults", timeout=10) as reply:
                faults = reply.json()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)

    assert url.startswith("http://127.0.0.1:")
    assert stats["requests"] == 0
    assert faults["casing"] == 0.2
    assert proc.returncode == 0
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--faults", "5xx=2"],
        ["--faults", "bogus=0.1"],
        ["--port", "70000"],
        ["--calls-per-minute", "-1"],
        ["--pages-per-minute", "0"],
    ],
)
def test_bad_flag_values_print_usage_and_exit_2(flags: list[str]) -> None:
    """An invalid value exits 2 with usage on stderr and no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "publisher", "simulate", *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr
