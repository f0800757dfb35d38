"""Setting the subject's compatibility when another job of the process does it at the same time
(an error path, so a fake registry client stands in for Apicurio's answers)."""

from __future__ import annotations

from typing import Any

import pytest

from publisher.errors import SchemaError
from publisher.registry import _set_compatibility
from publisher.registry_http import RegistryRefusedError


class RacingRegistry:
    """Answers like Apicurio when another writer created the subject's rule just before us."""

    def __init__(self, conflicts: int) -> None:
        self.level = "NONE"
        self.conflicts = conflicts
        self.puts = 0

    def get_compatibility(self, _subject: str) -> str | None:
        return self.level

    def set_compatibility(self, _subject: str, level: str) -> Any:
        self.puts += 1
        if self.conflicts:
            self.conflicts -= 1
            self.level = level  # the other writer's PUT landed first
            raise RegistryRefusedError(409, 409, "A rule named 'COMPATIBILITY' already exists.")
        self.level = level
        return {"compatibility": level}


def test_a_rule_created_meanwhile_by_another_job_is_accepted() -> None:
    """A 409 on the PUT (the live stream set the rule first) is answered by reading the level
    again: it is ours, so start-up goes on instead of failing the replay."""
    registry = RacingRegistry(conflicts=1)

    _set_compatibility(registry, "t-value", "BACKWARD_TRANSITIVE")  # type: ignore[arg-type]

    assert registry.level == "BACKWARD_TRANSITIVE"
    assert registry.puts == 1


def test_a_registry_that_keeps_refusing_stops_with_one_line() -> None:
    """Three conflicts in a row is no race: a SchemaError names the subject and the level."""

    class Refusing(RacingRegistry):
        def set_compatibility(self, _subject: str, _level: str) -> Any:
            self.puts += 1
            raise RegistryRefusedError(409, 409, "A rule named 'COMPATIBILITY' already exists.")

    registry = Refusing(conflicts=0)

    with pytest.raises(SchemaError, match="BACKWARD_TRANSITIVE on 't-value'"):
        _set_compatibility(registry, "t-value", "BACKWARD_TRANSITIVE")  # type: ignore[arg-type]
    assert registry.puts == 3
