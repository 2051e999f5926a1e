"""Fixtures of the perf tests: the real pymdp 1.x child, where its venv works."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def real_jax_peer() -> Iterator[Any]:
    """A started pymdp 1.x child (``perf.bench.peers.JaxPeer``), closed after the test;
    the test is skipped unless the pymdp 1.x venv works (it is never installed here)."""
    from perf.bench.peers import JaxPeer  # noqa: PLC0415
    from perf.pymdp_jax import ensure_venv  # noqa: PLC0415

    python, reason = ensure_venv(install=False)
    if python is None:
        pytest.skip(reason)
    peer = JaxPeer(python, timeout_s=600)
    try:
        yield peer
    finally:
        peer.close()
