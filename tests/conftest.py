"""Hooks for the whole test session (integration fixtures are in integration/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which broker and registry the integration tests ran against, so a CI log shows it."""
    from tests.integration.cluster import USED_CLUSTERS

    for found in USED_CLUSTERS:
        terminalreporter.write_line(
            f"integration tests ran against ({found.origin}): kafka {found.bootstrap_servers}, "
            f"registry {found.registry_url}"
        )
