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


def _save_keys(path: str, first: int, go: object) -> None:
    """Save 12 entries of one cache index from a separate process, with Numba's index write
    slowed so that two processes' load-pick-save steps would interleave without the lock."""
    import time

    from numba.core import caching

    import engine.kernels  # noqa: F401  (installs the lock)

    save_index = caching.IndexDataCacheFile._save_index

    def slow_save_index(self, overloads):  # noqa: ANN001, ANN202
        time.sleep(0.01)
        save_index(self, overloads)

    caching.IndexDataCacheFile._save_index = slow_save_index
    files = caching.IndexDataCacheFile(path, "f-1.py311", "stamp")
    go.wait()
    for key in range(first, first + 12):
        files.save(key, f"code of {key}")


def test_processes_saving_one_index_at_once_keep_each_entry_its_own(tmp_path: Path) -> None:
    """Two processes compiling overloads of one function at once: every key loads the code
    saved for it (before the lock, one process's index could name the other's data file)."""
    import multiprocessing

    from numba.core import caching

    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_save_keys, args=(str(tmp_path), first, go))
             for first in (0, 100)]
    for proc in procs:
        proc.start()
    go.set()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    files = caching.IndexDataCacheFile(str(tmp_path), "f-1.py311", "stamp")
    for key in [*range(12), *range(100, 112)]:
        assert files.load(key) == f"code of {key}"
