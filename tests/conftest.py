"""Shared fixtures: every test must leave /dev/shm as it found it."""

from __future__ import annotations

import pytest

from engine.shm import leftover_entries


@pytest.fixture(autouse=True)
def no_shared_memory_leaks():  # noqa: ANN201
    before = {e for entries in leftover_entries().values() for e in entries}
    yield
    after = {e for entries in leftover_entries().values() for e in entries}
    leaked = sorted(after - before)
    assert not leaked, f"shared memory left in /dev/shm: {leaked}"
