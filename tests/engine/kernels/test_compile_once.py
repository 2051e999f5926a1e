"""A kernel overload missing from Numba's cache is compiled by one process at a time; the
others wait and load what it saved."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from engine.kernels import compile_once


def _encode(go: object, misses: object, slot: int) -> None:
    """Compile ``beliefs.encode_log`` for one signature, with Numba's compile slowed so that
    two processes starting together would both compile it without the lock."""
    import time

    from numba.core import dispatcher

    from engine.kernels.beliefs import encode_log

    compile_args = dispatcher._FunctionCompiler.compile

    def slow_compile(self, args, return_type):  # noqa: ANN001, ANN202
        time.sleep(1.0)
        return compile_args(self, args, return_type)

    dispatcher._FunctionCompiler.compile = slow_compile
    go.wait()
    src = np.full((2, 3), 0.5, dtype=np.float32)
    encode_log(src, np.zeros((2, 3), dtype=np.uint16), np.array([0, 3]), 0, 2, 100.0, 65534,
               1e-6)
    misses[slot] = sum(encode_log.stats.cache_misses.values())


def test_processes_compiling_one_overload_at_once_compile_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))      # an empty cache for both
    ctx = multiprocessing.get_context("spawn")
    go, misses = ctx.Event(), ctx.Array("i", [-1, -1])
    procs = [ctx.Process(target=_encode, args=(go, misses, slot)) for slot in (0, 1)]
    for proc in procs:
        proc.start()
    go.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    assert sorted(misses) == [0, 1]
    assert list(tmp_path.rglob("*.compiling"))


def test_a_failed_compile_lets_go_of_its_lock() -> None:
    from numba.core.errors import TypingError

    from engine.kernels.beliefs import encode_log

    with pytest.raises(TypingError):
        encode_log("not", "arrays", None, 0, 1, 1, 1.0, 1)
    assert compile_once._HELD == {}


def test_a_cache_miss_outside_a_compile_takes_no_lock() -> None:
    """Numba's ufunc builders also read the cache; only a dispatcher's compile, which lets go
    when it ends, takes the lock."""
    from numba.core import types

    from engine.kernels.beliefs import encode_log

    assert encode_log._cache.load_overload((types.int8,), encode_log.targetctx) is None
    assert compile_once._HELD == {}
