"""Cached kernels are dropped when a kernel source changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.kernels import cache_guard


def test_stale_caches_are_dropped_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = tmp_path / "kernels"
    (kernels / "numba" / "__pycache__").mkdir(parents=True)
    (kernels / "__pycache__").mkdir()
    source = kernels / "numba" / "stages.py"
    source.write_text("x = 1\n")
    cached = [kernels / "numba" / "__pycache__" / "stages.f-1.py311.nbi",
              kernels / "numba" / "__pycache__" / "stages.f-1.py311.1.nbc"]
    monkeypatch.setattr(cache_guard, "_SOURCES", (kernels, kernels / "numba"))
    monkeypatch.setattr(cache_guard, "_EXTRA_SOURCES", ())
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    for path in cached:
        path.write_bytes(b"stale")
    assert cache_guard.drop_stale_kernel_caches()
    assert not any(path.exists() for path in cached)
    for path in cached:
        path.write_bytes(b"fresh")
    assert not cache_guard.drop_stale_kernel_caches()      # same sources: caches kept
    assert all(path.exists() for path in cached)
    source.write_text("x = 2\n")
    assert cache_guard.drop_stale_kernel_caches()
    assert not any(path.exists() for path in cached)
