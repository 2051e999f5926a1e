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


def test_kernel_cache_entries_are_stamped_with_every_kernel_source() -> None:
    """A cached kernel is valid for the digest of all the kernel sources, not only of its own
    file: an entry that a process started before an edit writes after it is never loaded."""
    from engine.kernels.numba import stages
    from engine.model import shared_tail

    digest = cache_guard.source_digest()
    for function in (stages.softmax_into, stages.policy_posterior, shared_tail.head_factors):
        locator = function._cache._impl.locator
        assert isinstance(locator, cache_guard._KernelSourcesStamp)
        assert locator.get_source_stamp() == ("agentloop-kernel-sources", digest)
        assert function._cache._cache_file._source_stamp == locator.get_source_stamp()
    cache_guard.install_locators()                 # idempotent: one pair of locators
    from numba.core import caching
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    assert sum(issubclass(c, cache_guard._KernelSourcesStamp)
               for c in impl._locator_classes) == 2


def test_a_function_outside_the_kernels_keeps_numbas_own_stamp(tmp_path: Path) -> None:
    source = tmp_path / "user_module.py"
    source.write_text("def f(x):\n    return x\n")
    assert cache_guard._KernelSourcesStamp.from_function(None, str(source)) is None
