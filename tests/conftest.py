"""Shared fixtures: every test must leave /dev/shm as it found it."""

from __future__ import annotations

import os

import pytest

from engine.runtime.shm import leftover_entries


def _own_entries() -> set[str]:
    """Entries of runs this process owns (run ids start with the owner's pid), so another
    test session running beside this one is not mistaken for a leak."""
    mine = f"{os.getpid()}x"
    return {e for run_id, entries in leftover_entries().items() if run_id.startswith(mine)
            for e in entries}


@pytest.fixture(autouse=True)
def no_shared_memory_leaks():  # noqa: ANN201
    before = _own_entries()
    yield
    leaked = sorted(_own_entries() - before)
    assert not leaked, f"shared memory left in /dev/shm: {leaked}"
