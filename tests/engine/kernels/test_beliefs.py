"""Quantized beliefs (engine.beliefs): error bounds, normalisation, edge rows, row ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Agents, ConfigError, InferenceConfig
from engine.kernels.beliefs import CODECS, PYMDP_EPS, BeliefCodec
from world.models import grid_model

LOG_CODECS = ("uint16", "uint8")
OFFSETS = np.array([0, 3, 10, 35], dtype=np.int64)          # factors of 3, 7 and 25 states


def _random_beliefs(rng: np.random.Generator, n: int, offsets: np.ndarray,
                    dtype: type = np.float64) -> np.ndarray:
    """Rows of per-factor distributions, from flat to very peaked (entries down to ~1e-40)."""
    out = np.empty((n, int(offsets[-1])), dtype=dtype)
    for f in range(offsets.size - 1):
        a, b = offsets[f], offsets[f + 1]
        logits = rng.normal(size=(n, b - a)) * rng.choice([0.1, 2.0, 10.0, 30.0], size=(n, 1))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[:, a:b] = p / p.sum(axis=1, keepdims=True)
    return out


def _round_trip(codec: BeliefCodec, beliefs: np.ndarray, out_dtype: type = np.float64
                ) -> np.ndarray:
    codes = codec.empty(beliefs.shape[0])
    out = np.empty(beliefs.shape, dtype=out_dtype)
    codec.encode(beliefs, codes)
    codec.decode(codes, out)
    return out


def _normalised(beliefs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = beliefs.astype(np.float64)
    for f in range(offsets.size - 1):
        a, b = offsets[f], offsets[f + 1]
        out[:, a:b] /= out[:, a:b].sum(axis=1, keepdims=True)
    return out


def _factor_sums(beliefs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.stack([beliefs[:, offsets[f]:offsets[f + 1]].astype(np.float64).sum(axis=1)
                     for f in range(offsets.size - 1)], axis=1)


def _check_bound(codec: BeliefCodec, src: np.ndarray, out: np.ndarray) -> float:
    """Assert the documented bounds; return the largest relative error above the floor."""
    q = _normalised(src, codec.state_offset)
    above = q >= codec.floor
    rel = np.abs(out[above] / q[above] - 1.0)
    assert rel.max() <= codec.max_rel_error * (1 + 1e-9) + 1e-12
    # below the floor: 0, or (kept with the largest code) no larger than the floor allows
    assert np.all(out[~above] <= codec.floor * math.exp(codec.step))
    assert np.all(out[q == 0] == 0)
    return float(rel.max())


# ------------------------------------------------------------------------------- the codecs
def test_unknown_codec_is_named() -> None:
    with pytest.raises(ConfigError, match="'int4'.*'uint16', 'uint8', 'float32'"):
        BeliefCodec("int4", OFFSETS)


@pytest.mark.parametrize("offsets", [[0], [1, 3], [0, 3, 3], np.array([0.0, 3.0]), [[0, 3]]])
def test_bad_state_offset_rejected(offsets: object) -> None:
    with pytest.raises(ConfigError, match="state_offset"):
        BeliefCodec("uint16", offsets)  # type: ignore[arg-type]


def test_bad_buffers_and_ranges_rejected() -> None:
    codec = BeliefCodec("uint16", OFFSETS)
    beliefs = _random_beliefs(np.random.default_rng(0), 4, OFFSETS)
    with pytest.raises(ConfigError, match="codes must be a uint16"):
        codec.encode(beliefs, np.empty((4, 35), dtype=np.uint8))
    with pytest.raises(ConfigError, match="codes must be"):
        codec.encode(beliefs, codec.empty(5))
    with pytest.raises(ConfigError, match="beliefs must be"):
        codec.decode(codec.empty(4), np.empty((4, 34)))
    with pytest.raises(ConfigError, match="row range"):
        codec.encode(beliefs, codec.empty(4), 3, 5)
    with pytest.raises(ConfigError, match="row range"):
        codec.decode(codec.empty(4), beliefs, 2, 1)


def test_dtypes_sizes_and_documented_constants() -> None:
    sizes = {name: BeliefCodec(name, OFFSETS) for name in CODECS}
    assert [c.dtype for c in sizes.values()] == [np.uint16, np.uint8, np.float32]
    assert [c.nbytes_per_agent() for c in sizes.values()] == [70, 35, 140]
    assert sizes["uint16"].nbytes_per_agent(100) == 200
    assert BeliefCodec(state_offset=OFFSETS).name == "uint16"
    assert sizes["uint16"].max_rel_error == pytest.approx(6.87e-4, rel=1e-3)
    assert sizes["uint8"].max_rel_error == pytest.approx(0.1706, rel=1e-3)


@pytest.mark.parametrize("name", LOG_CODECS)
def test_floor_is_the_smallest_range_below_pymdp_epsilon(name: str) -> None:
    """Zeroing an entry below e^-L moves ln(p + 1e-16) by less than the code's own rounding."""
    _, L, K = CODECS[name]
    assert math.exp(-L) <= math.expm1(L / K / 2) * PYMDP_EPS
    assert math.exp(-(L - 1)) > math.expm1((L - 1) / K / 2) * PYMDP_EPS
    assert math.exp(-L) < 1e-7 * 1e-10                # far below pymdp's e^-16 information gain


# ------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", LOG_CODECS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_within_documented_bound(name: str, dtype: type) -> None:
    codec = BeliefCodec(name, OFFSETS)
    src = _random_beliefs(np.random.default_rng(1), 2000, OFFSETS, dtype)
    out = _round_trip(codec, src, np.float64)
    worst = _check_bound(codec, src, out)
    assert worst > 0.5 * codec.max_rel_error          # the bound is tight, not loose
    assert ((src > 0) & (src < codec.floor)).any()      # the data reached below the floor
    sums = _factor_sums(out, OFFSETS)
    assert np.abs(sums - 1).max() <= 1e-12
    assert (out >= 0).all()


@pytest.mark.parametrize("name", LOG_CODECS)
def test_float32_output_is_normalised(name: str) -> None:
    codec = BeliefCodec(name, OFFSETS)
    out = _round_trip(codec, _random_beliefs(np.random.default_rng(2), 500, OFFSETS), np.float32)
    assert out.dtype == np.float32 and (out >= 0).all()
    assert np.abs(_factor_sums(out, OFFSETS) - 1).max() <= 1e-6


def test_uint8_is_coarser_than_uint16() -> None:
    src = _random_beliefs(np.random.default_rng(3), 1000, OFFSETS)
    err = {}
    for name in LOG_CODECS:
        codec = BeliefCodec(name, OFFSETS)
        err[name] = _check_bound(codec, src, _round_trip(codec, src))
    assert err["uint8"] > 50 * err["uint16"]
    assert BeliefCodec("uint8", OFFSETS).floor > BeliefCodec("uint16", OFFSETS).floor


@pytest.mark.parametrize("name", LOG_CODECS)
def test_one_hot_uniform_zero_and_tiny_rows(name: str) -> None:
    codec = BeliefCodec(name, OFFSETS)
    src = np.zeros((6, 35))
    src[0, [1, 5, 20]] = 1.0                             # one-hot in every factor
    src[1] = 1e-300                                      # all tiny (and unnormalised)
    src[2, :3], src[2, 3:10], src[2, 10:] = 1 / 3, 1 / 7, 1 / 25     # uniform
    src[3, :3] = [0.5, 0.5, 0.0]                         # exact zeros
    src[3, 3:10] = [0.25, 0, 0, 0.75, 0, 0, 0]
    src[3, 10:] = 0.0                                    # nothing positive: decodes uniform
    src[4, :3] = [1e-30, 2e-30, 4e-30]                   # tiny but shaped
    src[4, 3:10] = [np.nan, 1.0, -1.0, 0, 0, 0, 0]       # NaN, negative: zero code
    src[4, 10:] = 1.0
    src[5, :3] = [1.0, 1e-19, 1e-21]                     # one above the floor, one below
    src[5, 3:] = 2.0
    src[5, 10] = np.inf                                  # an infinite entry: decodes uniform
    out = _round_trip(codec, src)
    assert (out >= 0).all()
    assert np.abs(_factor_sums(out, OFFSETS) - 1).max() <= 1e-12
    np.testing.assert_array_equal(out[0], src[0])
    np.testing.assert_allclose(out[1:3], out[2:3].repeat(2, axis=0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(out[2], src[2], rtol=1e-15)
    np.testing.assert_array_equal(out[3, :10] == 0, src[3, :10] == 0)
    np.testing.assert_allclose(out[3, :10], src[3, :10], rtol=codec.max_rel_error)
    np.testing.assert_allclose(out[3, 10:], 1 / 25, rtol=1e-15)
    np.testing.assert_allclose(out[4, :3], [1 / 7, 2 / 7, 4 / 7], rtol=codec.max_rel_error)
    np.testing.assert_array_equal(out[4, 3:10], [0, 1, 0, 0, 0, 0, 0])
    assert out[5, 2] == 0 and (out[5, 1] > 0) == (name == "uint16")
    np.testing.assert_allclose(out[5, 3:10], 1 / 7, rtol=1e-15)
    np.testing.assert_allclose(out[5, 10:], 1 / 25, rtol=1e-15)


def test_float32_codec_is_a_plain_copy() -> None:
    codec = BeliefCodec("float32", OFFSETS)
    src = _random_beliefs(np.random.default_rng(4), 300, OFFSETS, np.float32)
    src[0] = 0.0                                        # no normalisation: zeros stay zeros
    codes = codec.empty(300)
    out = np.empty_like(src)
    codec.encode(src, codes)
    codec.decode(codes, out)
    np.testing.assert_array_equal(codes, src)
    np.testing.assert_array_equal(out, src)
    src64 = src.astype(np.float64) + 1e-12
    out64 = _round_trip(codec, src64)
    np.testing.assert_array_equal(out64, src64.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("name", CODECS)
def test_sub_range_touches_only_its_rows(name: str) -> None:
    codec = BeliefCodec(name, OFFSETS)
    src = _random_beliefs(np.random.default_rng(5), 10, OFFSETS)
    full = codec.empty(10)
    codec.encode(src, full)
    codes = np.full((10, 35), 7, dtype=codec.dtype)
    codec.encode(src, codes, 3, 7)
    np.testing.assert_array_equal(codes[3:7], full[3:7])
    assert (codes[:3] == 7).all() and (codes[7:] == 7).all()
    out = np.full((10, 35), np.nan)
    codec.decode(full, out, 2, 5)
    assert np.isnan(out[:2]).all() and np.isnan(out[5:]).all() and not np.isnan(out[2:5]).any()
    codec.encode(src, codes, 4, 4)                      # an empty range is a no-op
    assert (codes[:3] == 7).all()


@pytest.mark.parametrize("name", CODECS)
def test_calls_allocate_nothing(name: str) -> None:
    """Numba's NRT allocates only its per-call wrappers of the array arguments, whatever the range.

    encode: src, dst, state_offset; decode: src, dst, state_offset, table (float32: src, dst).
    """
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    codec = BeliefCodec(name, OFFSETS)
    src = _random_beliefs(np.random.default_rng(6), 1000, OFFSETS)
    codes, out = codec.empty(1000), np.empty_like(src)
    calls = {"encode": (lambda lo, hi: codec.encode(src, codes, lo, hi), 3),
             "decode": (lambda lo, hi: codec.decode(codes, out, lo, hi), 4)}
    for call, n_arrays in calls.values():
        call(0, 1000)
        for lo, hi in ((0, 1), (0, 1000), (500, 510)):
            before = rtsys.get_allocation_stats()
            for _ in range(3):
                call(lo, hi)
            after = rtsys.get_allocation_stats()
            assert after.alloc - before.alloc == after.free - before.free
            assert after.alloc - before.alloc == 3 * (n_arrays if codec.is_log else 2)


def test_agents_beliefs_round_trip() -> None:
    """An Agents population's float32 beliefs survive the default codec, through its layout."""
    model = grid_model(5)
    agents = Agents(model, 50, InferenceConfig(), seed=0)
    rng = np.random.default_rng(7)
    for _ in range(3):
        agents.step(np.stack([rng.integers(0, o, size=50) for o in model.num_obs], axis=1))
    codec = BeliefCodec("uint16", agents.layout.state_offset)
    codes = codec.empty(agents.n)
    before = agents._qs.copy()
    codec.encode(agents._qs, codes)
    codec.decode(codes, agents._qs)
    assert agents._qs.dtype == np.float32
    np.testing.assert_allclose(agents._qs, before, rtol=codec.max_rel_error + 1e-6,
                               atol=codec.floor)


# ------------------------------------------------------------------------------- property
@st.composite
def _rows(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=4))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    log_p = rng.uniform(-120.0, 0.0, size=(n, int(offsets[-1])))
    rows = np.exp(log_p) * (rng.random(log_p.shape) > 0.2)          # some exact zeros
    return rows, offsets


@settings(max_examples=150, deadline=None)
@given(data=_rows(), name=st.sampled_from(LOG_CODECS))
def test_property_random_distributions(data: tuple[np.ndarray, np.ndarray], name: str) -> None:
    rows, offsets = data
    codec = BeliefCodec(name, offsets)
    out = _round_trip(codec, rows)
    assert (out >= 0).all() and np.isfinite(out).all()
    assert np.abs(_factor_sums(out, offsets) - 1).max() <= 1e-12
    for f in range(offsets.size - 1):
        a, b = offsets[f], offsets[f + 1]
        src = rows[:, a:b]
        empty = src.sum(axis=1) == 0
        np.testing.assert_allclose(out[empty, a:b], 1.0 / (b - a), rtol=1e-15)
        if (~empty).any():
            sub = BeliefCodec(name, np.array([0, b - a]))
            _check_bound(sub, src[~empty], out[~empty, a:b])
