"""Fuzzing (issue 7): every input either works or raises the documented error.

Property tests (hypothesis, derandomized: the same examples on every run) over the four ways
data gets into agentloop:

1. model files and arrays: ``GenerativeModel.load`` / ``from_npz_bytes`` on damaged saves,
   random bytes and hand-made ``.npz`` files with bad arrays or meta, the constructor on
   random and targeted-bad arrays, and ``from_pymdp`` on random pymdp agents: a valid model
   or :class:`ModelError` (naming the array), nothing else;
2. observations: ``Agents.step`` and ``Engine.step`` on arrays of any shape, dtype, layout and
   writability: actions, or :class:`ObservationError` with every agent's state unchanged;
3. the command line: argument lists that must fail exit with code 2 and one line on stderr,
   never a traceback (and never start a run);
4. tick logs: damaged log bytes (and well-framed logs with bad message contents) read back
   or raise :class:`TickLogError`, and ``replay`` returns a result or raises
   :class:`TickLogError` / :class:`AgentloopError`.

``--hypothesis-show-statistics`` shows how the examples split between the outcomes.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine import Agents, Engine, GenerativeModel, InferenceConfig
from engine.errors import AgentloopError, ModelError, ObservationError, TickLogError
from engine.kernels.backends import cupy_available
from engine.model.generative_model import NORMALISATION_TOL
from engine.ticklog import schema as ticklog
from engine.ticklog.reader import TickLogReader
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from engine.ticklog.schema import TickLogHeader
from engine.ticklog.writer import TickLogWriter
from tools import cli
from world.models import grid_model, random_model

#: derandomized (a fixed sequence of examples, so CI is deterministic), no example database
#: written into the tree, no per-example deadline (the machine is shared)
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

def event(text: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (no-op outside a given test)."""
    try:
        hypothesis_event(text)
    except InvalidArgument:
        pass


#: what a ModelError may name
ARRAY_NAME = re.compile(r"^(A|B|C|D|E|pA|pB|policies|A_factor_list|B_factor_list|"
                        r"control_fac_idx)(\[\d+\])?$")


# ============================================================================ byte mutations
MUTATIONS = ("flip", "byte", "truncate", "insert", "duplicate", "delete")


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_ops: int = 3) -> bytes:
    """``data`` with 1..max_ops bit flips, byte overwrites, truncations, insertions of random
    bytes, duplicated chunks or deleted chunks, at positions anywhere in the buffer."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        if not buf:
            buf += draw(st.binary(min_size=1, max_size=16))
            continue
        kind = draw(st.sampled_from(MUTATIONS))
        pos = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            buf[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        else:
            length = draw(st.integers(1, min(512, len(buf) - pos)))
            if kind == "duplicate":
                buf[pos:pos] = buf[pos:pos + length]
            else:
                del buf[pos:pos + length]
    return bytes(buf)


# ============================================================================ 1. models
def _columns(rng: np.random.Generator, rows: int, shape: tuple[int, ...],
             one_hot: bool) -> np.ndarray:
    """Random column-stochastic array ``(rows, *shape)``; ``one_hot``: exact 0/1 columns."""
    if one_hot:
        out = np.zeros((rows, *shape))
        pick = rng.integers(0, rows, size=shape)
        np.put_along_axis(out, pick[None], 1.0, axis=0)
        return out
    return np.moveaxis(rng.dirichlet(np.full(rows, 0.7), size=shape), -1, 0)


@st.composite
def model_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of a valid ``GenerativeModel`` (1-2 factors and modalities)."""
    n_f = draw(st.integers(1, 2))
    num_states = draw(st.lists(st.integers(1, 3), min_size=n_f, max_size=n_f))
    num_controls = draw(st.lists(st.integers(1, 3), min_size=n_f, max_size=n_f))
    num_obs = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    factor_lists = None
    if draw(st.booleans()):                 # any order: A's state axes follow the list
        factor_lists = [list(draw(st.permutations(range(n_f)))[:draw(st.integers(1, n_f))])
                        for _ in num_obs]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    one_hot = draw(st.booleans())
    deps = factor_lists or [list(range(n_f))] * len(num_obs)
    spec: dict[str, Any] = {
        "A": [_columns(rng, o, tuple(num_states[f] for f in d), one_hot)
              for o, d in zip(num_obs, deps, strict=True)],
        "B": [_columns(rng, s, (s, u), one_hot)
              for s, u in zip(num_states, num_controls, strict=True)],
        "C": [rng.normal(size=o) * 3 for o in num_obs],
        "D": [rng.dirichlet(np.ones(s)) for s in num_states],
    }
    if factor_lists is not None:
        spec["A_factor_list"] = factor_lists
    return spec


def assert_valid(model: GenerativeModel) -> None:
    """What a GenerativeModel promises: finite, non-negative, normalised, consistent, frozen."""
    assert model.num_states == tuple(b.shape[0] for b in model.B)
    for name, arrays in (("A", model.A), ("B", model.B), ("D", model.D)):
        for arr in arrays:
            assert not arr.flags.writeable, name
            assert np.isfinite(arr).all() and (arr >= 0).all(), name
            assert np.abs(arr.sum(axis=0) - 1).max() <= NORMALISATION_TOL, name
    for m, a in enumerate(model.A):
        deps = model.A_factor_list[m]
        assert a.shape == (model.num_obs[m], *(model.num_states[f] for f in deps))
        assert model.C[m].shape[0] == model.num_obs[m] and np.isfinite(model.C[m]).all()
    for f, b in enumerate(model.B):
        assert b.shape == (model.num_states[f], model.num_states[f], model.num_controls[f])
        assert model.D[f].shape == (model.num_states[f],)


def load_or_model_error(data: bytes, path: Path | None = None) -> GenerativeModel | None:
    """The model in ``data`` (written to ``path`` and loaded from there, when given), or None
    when it raised ModelError (anything else fails the test)."""
    try:
        if path is None:
            model = GenerativeModel.from_npz_bytes(data, "fuzz.npz")
        else:
            path.write_bytes(data)
            model = GenerativeModel.load(path)
    except ModelError as exc:
        assert str(exc), "a ModelError says what is wrong"
        event("ModelError")
        return None
    assert_valid(model)
    event("loaded")
    return model


@functools.cache
def saved_models() -> list[tuple[GenerativeModel, bytes]]:
    """Valid models and their ``.npz`` bytes: small grid, and one with every optional part."""
    rng = np.random.default_rng(3)
    full = random_model(rng, [3, 2], [2, 3], [2, 1], A_factor_list=[[0], [0, 1]],
                        with_pA=True, with_pB=True)
    policies = full.policies_for(2)
    full = GenerativeModel(A=full.A, B=full.B, C=full.C, D=full.D, pA=full.pA, pB=full.pB,
                           A_factor_list=full.A_factor_list, policies=policies,
                           E=np.full(len(policies), 1 / len(policies)))
    return [(m, m.to_npz_bytes()) for m in (grid_model(2), full)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models") / "damaged.npz"


@settings(FUZZ, max_examples=400)
@given(which=st.integers(0, 1), from_file=st.booleans(), data=st.data())
def test_damaged_model_files_load_equal_or_raise_model_error(
        model_path: Path, which: int, from_file: bool, data: st.DataObject) -> None:
    model, good = saved_models()[which]
    damaged = data.draw(mutated(good))
    loaded = load_or_model_error(damaged, model_path if from_file else None)
    if loaded is not None:  # zip CRCs guard the arrays: a damaged file that loads is the same
        assert loaded.content_hash() == model.content_hash()


@settings(FUZZ, max_examples=200)
@given(data=st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b),
    st.binary(max_size=300).map(lambda b: b"\x93NUMPY\x01\x00" + b),
    st.binary(max_size=300).map(lambda b: b"PK\x05\x06" + b)))
def test_random_bytes_raise_model_error(data: bytes) -> None:
    assert load_or_model_error(data) is None


def test_load_from_a_path_raises_model_error(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    grid_model(2).save(path)
    assert GenerativeModel.load(path).content_hash() == grid_model(2).content_hash()
    for damaged in (b"", b"not a zip", path.read_bytes()[:-30], path.read_bytes()[:100]):
        path.write_bytes(damaged)
        with pytest.raises(ModelError):
            GenerativeModel.load(path)
    with pytest.raises(FileNotFoundError):            # a missing file stays an OSError
        GenerativeModel.load(tmp_path / "absent.npz")


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.text(max_size=5)
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6)

BAD_DTYPES = (np.float32, np.float16, np.int64, np.uint8, np.bool_, np.complex128, "U3",
              "S3", "datetime64[s]", "timedelta64[s]")


@st.composite
def bad_array(draw: st.DrawFn, arr: np.ndarray) -> np.ndarray:
    """``arr`` reshaped, with NaN/inf/negative entries, scaled columns or another dtype."""
    arr = np.array(arr, dtype=np.float64)
    kind = draw(st.sampled_from(["shape", "nonfinite", "negative", "scale", "dtype",
                                 "zero-d", "empty", "random"]))
    if kind == "shape":
        return draw(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=4,
                                                            max_side=4),
                               elements=st.floats(0, 1)))
    if kind == "zero-d":
        return np.array(draw(st.floats(allow_nan=True)))
    if kind == "empty":
        return arr.reshape(-1)[:0] if arr.ndim == 0 else arr[:0]
    if kind == "random":
        return draw(hnp.arrays(draw(st.sampled_from([np.float64, np.int8, np.uint64])),
                               arr.shape))
    if arr.size == 0:
        return arr
    pos = draw(st.integers(0, arr.size - 1))
    if kind == "nonfinite":
        arr.flat[pos] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "negative":
        arr.flat[pos] = -draw(st.floats(1e-9, 1e9))
    elif kind == "scale":
        arr = arr * draw(st.floats(0, 10))
    else:
        dtype = np.dtype(draw(st.sampled_from(BAD_DTYPES)))
        if dtype.kind == "c":
            arr = arr + 1j * draw(st.floats(-1, 1))
        arr = arr.astype(dtype)
    return arr


@settings(FUZZ, max_examples=500)
@given(which=st.integers(0, 1), data=st.data())
def test_hand_made_npz_files_load_valid_or_raise_model_error(which: int,
                                                             data: st.DataObject) -> None:
    """Wrong shapes, NaN/inf, negative entries, unnormalised columns, wrong dtypes, missing
    or extra keys and bad meta JSON: a valid model or ModelError, never another exception."""
    _model, good = saved_models()[which]
    with np.load(io.BytesIO(good)) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    for _ in range(data.draw(st.integers(1, 3))):
        if not arrays:
            break
        kind = data.draw(st.sampled_from(["array", "array", "drop", "extra", "meta-field",
                                          "meta-drop", "meta-json", "meta-bytes"]))
        key = data.draw(st.sampled_from(sorted(arrays)))
        if kind == "array" and key != "meta":
            arrays[key] = data.draw(bad_array(arrays[key]))
        elif kind == "drop":
            del arrays[key]
        elif kind == "extra":
            name = data.draw(st.sampled_from(["A_9", "B_2", "E", "policies", "pA_0", "junk"]))
            arrays[name] = np.ones(data.draw(st.integers(0, 3)))
        elif kind == "meta-field":
            field = data.draw(st.sampled_from(sorted(meta)))
            meta[field] = data.draw(json_values)
        elif kind == "meta-drop" and meta:
            del meta[data.draw(st.sampled_from(sorted(meta)))]
        elif kind == "meta-json":
            arrays["meta"] = np.frombuffer(
                json.dumps(data.draw(json_values)).encode(), dtype=np.uint8)
            continue
        elif kind == "meta-bytes":
            arrays["meta"] = np.frombuffer(data.draw(st.binary(max_size=40)), dtype=np.uint8)
            continue
        if "meta" in arrays:
            arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    loaded = load_or_model_error(_npz(arrays))
    if loaded is not None:  # whatever loads saves and loads back the same
        again = GenerativeModel.from_npz_bytes(loaded.to_npz_bytes())
        assert again.content_hash() == loaded.content_hash()


def test_deeply_nested_meta_json_raises_model_error() -> None:
    arrays = {k: np.array(v) for k, v in np.load(io.BytesIO(grid_model(2).to_npz_bytes()))
              .items()}
    arrays["meta"] = np.frombuffer(b"[" * 100_000, dtype=np.uint8)
    assert load_or_model_error(_npz(arrays)) is None


#: corruptions of one array, and what the ModelError must name (None: may be valid)
CORRUPTIONS = ("nan", "inf", "negative", "scale", "extra_axes", "drop_axis", "grow",
               "complex", "strings", "empty", "ragged", "drop_item", "wrong_type")


def _corrupt(spec: dict[str, Any], key: str, i: int, kind: str,
             draw: Callable[[st.SearchStrategy[Any]], Any]) -> str | None:
    """Corrupt ``spec[key][i]`` in place; returns the array name the error must give,
    ``"any"`` when the error may surface elsewhere, or None when the result may be valid."""
    name = f"{key}[{i}]"
    arr = np.array(spec[key][i], dtype=np.float64)
    pos = draw(st.integers(0, arr.size - 1))
    stochastic = key in ("A", "B", "D")
    new: Any
    if kind in ("nan", "inf"):
        new = arr.copy()
        new.flat[pos] = np.nan if kind == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
    elif kind == "negative":
        new = arr.copy()
        new.flat[pos] = -draw(st.floats(1e-6, 1e6))
        name = name if stochastic else None          # C holds log-preferences: any sign
    elif kind == "scale":
        new = arr * draw(st.floats(1.01, 5) | st.floats(0, 0.99))
        name = name if stochastic else None
    elif kind == "extra_axes":
        new = arr[..., None, None]
    elif kind == "drop_axis":
        new = arr.sum(axis=-1) if arr.ndim > 1 else np.array(arr[0])
        if key == "A" and arr.ndim > 2:
            new = new / new.sum(axis=0)              # normalised, but one state axis short
    elif kind == "grow":
        axis = 1 if key == "A" else 0                # A: a state axis; B: not square
        new = np.concatenate([arr, np.take(arr, [0], axis=axis)], axis=axis)
        if stochastic and axis == 0:
            new = new / new.sum(axis=0)
    elif kind == "complex":
        new = arr + 1j * draw(st.floats(0.1, 1))
    elif kind == "strings":
        new = arr.astype("U32")
    elif kind == "empty":
        new = arr[:0]
    elif kind == "ragged":
        rows = [list(r) for r in arr.reshape(arr.shape[0], -1)] + [[0.5]]
        new = rows if len(rows[0]) != 1 else [*rows[:-1], [0.5, 0.5]]
    elif kind == "drop_item":
        del spec[key][i]
        return "any"
    else:  # wrong_type
        spec[key] = draw(st.sampled_from([3, "A", {"a": 1}, None, 2.5]))
        return None if spec[key] is None and key in ("C", "D") else key   # None: defaults
    spec[key][i] = new
    return name


@settings(FUZZ, max_examples=400)
@given(spec=model_specs(), data=st.data())
def test_model_constructor_validates_or_names_the_array(spec: dict[str, Any],
                                                        data: st.DataObject) -> None:
    expect: str | None = None
    if data.draw(st.booleans(), label="corrupt"):
        key = data.draw(st.sampled_from(["A", "B", "C", "D"]))
        i = data.draw(st.integers(0, len(spec[key]) - 1))
        expect = _corrupt(spec, key, i, data.draw(st.sampled_from(CORRUPTIONS)), data.draw)
    try:
        model = GenerativeModel(**spec)
    except ModelError as exc:
        event(f"ModelError (expected {expect})")
        assert expect is not None, f"a valid model was refused: {exc}"
        assert ARRAY_NAME.match(exc.array), exc.array
        assert str(exc).startswith(exc.array)
        if expect != "any":
            assert exc.array == expect, f"expected an error naming {expect}, got {exc}"
        return
    event(f"valid (expected {expect})")
    assert expect in (None, "any"), f"a model with a bad {expect} was accepted"
    assert_valid(model)
    back = GenerativeModel.from_npz_bytes(model.to_npz_bytes())
    assert back.content_hash() == model.content_hash()
    agents = Agents(model, 3, seed=1)
    actions = agents.step(np.zeros((3, model.num_modalities), dtype=np.int64))
    assert ((actions >= 0) & (actions < np.array(model.num_controls))).all()


@settings(FUZZ, max_examples=200)
@given(arrays=st.fixed_dictionaries({
    key: st.lists(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=4, max_side=3),
                             elements=st.floats(-0.5, 1.5) | st.sampled_from(
                                 [0.0, 0.5, 1.0, np.nan, np.inf])),
                  min_size=0, max_size=2)
    for key in ("A", "B", "C", "D")}))
def test_model_constructor_on_random_arrays(arrays: dict[str, list[np.ndarray]]) -> None:
    try:
        model = GenerativeModel(**arrays)
    except ModelError as exc:
        assert ARRAY_NAME.match(exc.array), exc.array
        return
    assert_valid(model)


@settings(FUZZ, max_examples=60)
@given(spec=model_specs(), policy_len=st.integers(1, 2), learn=st.booleans())
def test_from_pymdp_round_trips(spec: dict[str, Any], policy_len: int, learn: bool) -> None:
    from pymdp import utils
    from pymdp.agent import Agent

    from tests import pymdp_peer  # noqa: F401  (patches pymdp 0.0.7.1 for NumPy 2)

    base = GenerativeModel(**spec).with_full_A()     # pymdp 0.0.7.1: A over every factor

    def obj(arrays: Any) -> np.ndarray:
        out = utils.obj_array(len(arrays))
        for i, a in enumerate(arrays):
            out[i] = np.array(a)
        return out

    agent = Agent(A=obj(base.A), B=obj(base.B), C=obj(base.C), D=obj(base.D),
                  pA=obj([a * 2 + 0.1 for a in base.A]) if learn else None,
                  policy_len=policy_len, control_fac_idx=list(base.control_fac_idx) or None)
    model = GenerativeModel.from_pymdp(agent)
    assert_valid(model)
    for ours, theirs in zip((*model.A, *model.B, *model.C, *model.D),
                            (*agent.A, *agent.B, *agent.C, *agent.D), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(model.policies, np.array(agent.policies))
    again = GenerativeModel.from_pymdp(model.to_pymdp(InferenceConfig(policy_len=policy_len,
                                                                      dtype="float64")))
    assert again.content_hash() == model.content_hash()


# ============================================================================ 2. observations
OBS_MODEL = grid_model(3)                      # num_obs (9, 3): two modalities
NUM_OBS = np.array(OBS_MODEL.num_obs)
N_AGENTS = 4
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
OTHER_DTYPES = ("bool", "float32", "float64", "complex128", "object", "U4", "datetime64[s]")


def _valid_obs(n: int) -> st.SearchStrategy[np.ndarray]:
    return st.tuples(*(st.lists(st.integers(0, int(o) - 1), min_size=n, max_size=n)
                       for o in NUM_OBS)).map(lambda cols: np.array(cols, dtype=np.int64).T)


@st.composite
def observations(draw: st.DrawFn, n: int) -> Any:
    """Observation candidates: valid ones in every integer dtype and memory layout, and
    wrong shapes, dtypes, values (negative, out of range, huge uint64, NaN) and types."""
    base = draw(_valid_obs(n))
    kind = draw(st.sampled_from(["valid", "valid", "value", "dtype", "shape", "wild",
                                 "not-array"]))
    if kind == "value":
        i, m = draw(st.integers(0, n - 1)), draw(st.integers(0, len(NUM_OBS) - 1))
        value = draw(st.sampled_from([-1, int(NUM_OBS[m]), 2**31, -2**62, 2**63, 2**64 - 1]))
        if value >= 2**63:
            base = base.astype(np.uint64)
        base[i, m] = value
    elif kind == "dtype":
        dtype = draw(st.sampled_from(OTHER_DTYPES))
        base = base.astype(dtype)
        if dtype.startswith("float") and draw(st.booleans()):
            base[draw(st.integers(0, n - 1)), 0] = np.nan
    elif kind == "shape":
        shape = draw(st.sampled_from([(n,), (n, 1), (n, 3), (n + 1, 2), (n - 1, 2), (2, n),
                                      (n, 2, 1), (1, n, 2), (), (0, 2)]))
        base = np.resize(base, shape)
    elif kind == "wild":
        dtype = draw(st.sampled_from(INT_DTYPES + ("float64", "bool")))
        shape = draw(st.sampled_from([(n, 2), (n, 2), (n, 3), (2, n)]))
        base = draw(hnp.arrays(dtype, shape))
    elif kind == "not-array":
        return draw(st.sampled_from([base.tolist(), None, 3, "obs", base.tobytes()]))
    if base.dtype.kind in "iu" and kind in ("valid", "value") and draw(st.booleans()):
        cast = base.astype(draw(st.sampled_from(INT_DTYPES)))
        if np.array_equal(cast.astype(object), base.astype(object)):   # the values fit
            base = cast
    layout = draw(st.sampled_from(["C", "F", "strided", "C"]))
    if layout == "F":
        base = np.asfortranarray(base)
    elif layout == "strided" and base.ndim == 2:
        wide = np.zeros((base.shape[0], base.shape[1] * 2), dtype=base.dtype)
        wide[:, ::2] = base
        base = wide[:, ::2]
    if draw(st.booleans()):
        base.setflags(write=False)
    return base


def _is_valid(obs: Any, n: int) -> bool:
    return (isinstance(obs, np.ndarray) and obs.dtype.kind in "iu"
            and obs.shape == (n, len(NUM_OBS)) and bool((obs >= 0).all())
            and bool((obs < NUM_OBS).all()))


@settings(FUZZ, max_examples=250)
@given(n=st.integers(1, N_AGENTS), steps=st.integers(1, 3), data=st.data())
def test_agents_step_works_or_raises_observation_error(n: int, steps: int,
                                                       data: st.DataObject) -> None:
    agents = Agents(OBS_MODEL, n, seed=2)
    twin = Agents(OBS_MODEL, n, seed=2)      # fed the same valid ticks as int64 C arrays
    for _ in range(steps):
        obs = data.draw(observations(n))
        qs, tick = [q.copy() for q in agents.qs], agents.tick
        actions, q_pi = agents.actions.copy(), agents.q_pi.copy()
        event(f"{'valid' if _is_valid(obs, n) else 'invalid'} {type(obs).__name__}")
        if _is_valid(obs, n):
            got = agents.step(obs)
            expected = twin.step(np.array(obs, dtype=np.int64))
            np.testing.assert_array_equal(got, expected)
            for ours, theirs in zip(agents.qs, twin.qs, strict=True):
                np.testing.assert_array_equal(ours, theirs)
            continue
        with pytest.raises(ObservationError):
            agents.step(obs)
        assert agents.tick == tick
        for before, after in zip(qs, agents.qs, strict=True):
            np.testing.assert_array_equal(before, after)
        np.testing.assert_array_equal(actions, agents.actions)
        np.testing.assert_array_equal(q_pi, agents.q_pi)


@pytest.fixture(scope="module")
def engine() -> Any:
    with Engine(OBS_MODEL, N_AGENTS, workers=0, seed=3, chunk=2) as eng:
        yield eng


def _same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_engine_step_works_or_raises_observation_error(engine: Engine,
                                                       data: st.DataObject) -> None:
    obs = data.draw(observations(N_AGENTS))
    wrap = data.draw(st.sampled_from(["bare", "bare", "list", "dict", "wrong-dict", "pair"]))
    given_obs: Any = {"bare": obs, "list": [obs], "dict": {"main": obs},
                      "wrong-dict": {"other": obs}, "pair": (obs, obs)}[wrap]
    before, tick = engine.agent_state(), engine.tick
    valid = _is_valid(obs, N_AGENTS) and wrap in ("bare", "list", "dict")
    event("valid" if valid else "invalid")
    if valid:
        actions = engine.step(given_obs)
        assert engine.tick == tick + 1
        assert ((np.asarray(actions) >= 0)
                & (np.asarray(actions) < np.array(OBS_MODEL.num_controls))).all()
        return
    with pytest.raises(ObservationError):
        engine.step(given_obs)
    assert engine.tick == tick
    assert _same_state(before, engine.agent_state())


# ============================================================================ 3. command line
#: argument text a shell can pass (no NUL, no lone surrogates), control characters included
junk_text = (st.sampled_from(["a\nb", "\n", "\r\n", "\t", " ", "\x1b[2K", "é", "日本",
                              "\u202e", "💥", "\x7f", "-", "--"])
             | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                       max_size=10))


def _bad_int(low: int) -> st.SearchStrategy[str]:
    """Text that ``int()`` refuses, or a whole number below ``low``."""
    def refused(text: str) -> bool:
        try:
            return int(text) < low
        except ValueError:
            return True
    return (st.integers(-10**30, low - 1).map(str)
            | st.sampled_from(["", "abc", "1.5", "1e3", "0x10", "--", "NaN", "½", "٣.٣",
                               "1 2", "+-1"])
            | junk_text).filter(refused)


def _bad_float() -> st.SearchStrategy[str]:
    """Text that is not a finite number above 0."""
    def refused(text: str) -> bool:
        try:
            value = float(text)
        except ValueError:
            return True
        return not (value > 0 and math.isfinite(value))
    return (st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400", "", "ten", "0x1",
                             "-0.0", "1e-400"])
            | st.floats(max_value=0).map(repr) | junk_text).filter(refused)


#: option -> strategy of a value it accepts (argparse-valid; never used alone: every
#: command line also gets a unit that must fail)
RUN_GOOD = {
    "--world": st.sampled_from(["grid", "foraging"]),
    "--size": st.integers(2, 40).map(str),
    "--agents": st.integers(1, 10**6).map(str),
    "--hz": st.sampled_from(["0.5", "10", "1e3"]),
    "--ticks": st.integers(1, 10**9).map(str),
    "--workers": st.integers(0, 4).map(str),
    "--backend": st.sampled_from(["numba", "auto"]),
    "--policy-len": st.integers(1, 3).map(str),
    "--seed": st.integers(-10**30, 10**30).map(str),
    "--snapshot-every": st.integers(0, 10**6).map(str),
}


def _unknown_option() -> st.SearchStrategy[list[str]]:
    return st.sampled_from(["--xyzzy", "-q", "--agent-count", "--worlds", "---agents",
                            "-x"]).map(lambda o: [o])


def _stray(text: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """A positional argument nobody takes (never option-like)."""
    return text.filter(lambda t: not t.startswith("-")).map(lambda t: [t])


@st.composite
def run_argv(draw: st.DrawFn, tmp: Path) -> list[str]:
    bad_units: dict[str, st.SearchStrategy[list[str]]] = {
        "--agents": _bad_int(1).map(lambda v: ["--agents", v]),
        "--size": _bad_int(2).map(lambda v: ["--size", v]),   # 1 parses, the run refuses it
        "--ticks": _bad_int(1).map(lambda v: ["--ticks", v]),
        "--policy-len": _bad_int(1).map(lambda v: ["--policy-len", v]),
        "--workers": _bad_int(0).map(lambda v: ["--workers", v]),
        "--snapshot-every": _bad_int(0).map(lambda v: ["--snapshot-every", v]),
        "--seed": st.sampled_from(["x", "1.0", "", "٣x"]).map(lambda v: ["--seed", v]),
        "--hz": _bad_float().map(lambda v: ["--hz", v]),
        "--duration": _bad_float().map(lambda v: ["--duration", v]),
        "--world": junk_text.filter(lambda w: w not in ("grid", "foraging")).map(
            lambda w: [f"--world={w}"]),
        "--backend": st.sampled_from(["gpu", "", "NUMBA"] + ([] if cupy_available()[0]
                                                             else ["cupy"])).map(
            lambda b: ["--backend", b]),
        "--log": st.sampled_from([str(tmp), str(tmp / "no-such-dir" / "run.mcap")]).map(
            lambda p: ["--log", p]),
        "unknown": _unknown_option(),
        "stray": _stray(junk_text),
        "missing": st.sampled_from(["--agents", "--hz", "--log", "--world"]).map(
            lambda o: [o]),
        "exclusive": st.just(["--ticks", "5", "--duration", "1"]),
    }
    bad_key = draw(st.sampled_from(sorted(bad_units)))
    bad = draw(bad_units[bad_key])
    if draw(st.booleans()) and len(bad) == 2 and bad[0].startswith("--"):
        bad = [f"{bad[0]}={bad[1]}"]
    fillers = draw(st.lists(st.sampled_from(sorted(set(RUN_GOOD) - {bad_key, "--ticks"})),
                            unique=True, max_size=4))
    units = [[opt, draw(RUN_GOOD[opt])] for opt in fillers]
    if bad_key == "missing":            # an option without its value: only at the end
        return ["run", *(t for u in units for t in u), *bad]
    units.insert(draw(st.integers(0, len(units))), bad)
    return ["run", *(t for u in units for t in u)]


@st.composite
def log_argv(draw: st.DrawFn, tmp: Path) -> list[str]:
    """replay / inspect / diff / shm / top-level command lines that must fail."""
    missing = junk_text.map(lambda t: str(tmp / f"missing-{t}.mcap"))
    bad_file = st.sampled_from([str(tmp), str(tmp / "empty.mcap"), str(tmp / "junk.mcap"),
                                str(tmp / "model.npz")])
    log = missing | bad_file
    command = draw(st.sampled_from(["replay", "inspect", "diff", "shm", "top"]))
    if command == "top":
        return draw(st.sampled_from([[], ["--xyzzy"], ["runn"], ["", "run"], ["RUN"]])
                    | _stray(junk_text).filter(
                        lambda a: a[0] not in ("run", "replay", "inspect", "diff", "demo",
                                               "shm", "soak")))
    if command == "shm":
        return ["shm", *draw(st.sampled_from([[], ["lists"], ["clean", "now"], ["--all"],
                                              ["list", "--xyzzy"]]) | _stray(junk_text).filter(
            lambda a: a[0] not in ("list", "clean")))]
    if command == "diff":
        files = draw(st.lists(log, min_size=0, max_size=3))
        if len(files) == 2 and draw(st.booleans()):
            files[0] = str(tmp / "good.mcap")          # one good log, one bad
        return ["diff", *files, *draw(st.sampled_from([[], ["--json"]]))]
    units: list[list[str]] = [[draw(log)]]
    if command == "replay":
        extra = {"--from": _bad_int(0), "--threads": _bad_int(1)}
    else:
        extra = {"--plot": st.sampled_from([str(tmp / "x.unknownext"), str(tmp),
                                            str(tmp / "no-dir" / "x.png")])}
    for opt in draw(st.lists(st.sampled_from(sorted(extra)), unique=True, max_size=2)):
        units.append([opt, draw(extra[opt])])
    if draw(st.booleans()):
        units.append(draw(_unknown_option() | _stray(junk_text)))
        if draw(st.booleans()):
            units[0] = [str(tmp / "good.mcap")]         # must fail on the extra argument
    if draw(st.booleans()):
        units.append(units.pop(0))                      # the log last
    return [command, *(t for u in units for t in u)]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory, replayable_log: Path) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "empty.mcap").write_bytes(b"")
    (tmp / "junk.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 3)
    grid_model(2).save(tmp / "model.npz")
    (tmp / "good.mcap").write_bytes(replayable_log.read_bytes())
    return tmp


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _check_failure(argv: list[str], code: int, out: str, err: str) -> None:
    assert code == 2, f"{argv!r}: exit code {code}, stderr {err!r}"
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, f"{argv!r}: stderr {err!r}"
    assert out == "", f"{argv!r}: stdout {out!r}"


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_run_command_lines_that_must_fail(cli_files: Path, data: st.DataObject,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = data.draw(run_argv(cli_files))
    _check_failure(argv, *_run_cli(argv, capsys))


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_log_command_lines_that_must_fail(cli_files: Path, data: st.DataObject,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = data.draw(log_argv(cli_files))
    _check_failure(argv, *_run_cli(argv, capsys))


# ============================================================================ 4. tick logs
LOG_AGENTS = 5


def _header(model_npz: bytes | None = None) -> TickLogHeader:
    return TickLogHeader(n_agents=LOG_AGENTS, hz=10.0, seed=1, model_npz=model_npz,
                         config={"policy_len": 1}, world={"name": "fuzz"})


@pytest.fixture(scope="module")
def plain_log(tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """A closed log in many small chunks: 8 ticks, snapshots at ticks 2 and 5, a footer."""
    path = tmp_path_factory.mktemp("ticklog") / "plain.mcap"
    rng = np.random.default_rng(4)
    ticks = {}
    with TickLogWriter(path, _header(b"not really a model"), chunk_size=300) as writer:
        for t in range(8):
            obs = rng.integers(0, 9, size=(LOG_AGENTS, 2))
            act = rng.integers(0, 5, size=(LOG_AGENTS, 1))
            writer.write_tick(t, obs, act, wall_time=100.0 + t, level=t % 2,
                              stale_agents=[t % LOG_AGENTS], timings={"wall_s": 0.01})
            ticks[t] = (obs, act)
            if t in (2, 5):
                writer.write_beliefs(t, [rng.random((LOG_AGENTS, 3)).astype(np.float32),
                                         np.full((LOG_AGENTS, 2), t, np.uint16)],
                                     {"names": ["qs", "other"]})
    return path, ticks


@pytest.fixture(scope="module")
def replayable_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded engine run (6 ticks, snapshots every 2) that replays."""
    path = tmp_path_factory.mktemp("replay") / "run.mcap"
    model = grid_model(2)
    rng = np.random.default_rng(5)
    with Engine(model, LOG_AGENTS, workers=0, seed=2, chunk=2) as eng:
        recorder = TickRecorder(eng, str(path), snapshot_every=2)
        for _ in range(6):
            eng.step(np.stack([rng.integers(0, o, size=LOG_AGENTS) for o in model.num_obs],
                              axis=1))
            recorder.record()
        recorder.writer.close()
    assert replay(str(path)).ok
    return path


def read_everything(path: Path) -> dict[int, Any]:
    """Every tick read through every reader entry point; TickLogError is the only error."""
    got: dict[int, Any] = {}
    try:
        with TickLogReader(path) as reader:
            assert isinstance(reader.header, TickLogHeader)
            reader.footer  # noqa: B018
            reader.last_tick  # noqa: B018
            for record in reader.ticks():
                got.setdefault(record.tick, (record.observations, record.actions))
            list(reader.ticks(4))
            list(reader.snapshots())
            reader.snapshot_at_or_before(4)
            reader.snapshot_at_or_before(100)
    except TickLogError as exc:
        assert str(exc)
        event(f"TickLogError after {len(got)} ticks")
        return got
    event(f"read {len(got)} ticks")
    return got


def _records(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each top-level MCAP record of an intact file."""
    out, pos = [], 8
    while pos + 9 <= len(data) - 8:
        _op, length = struct.unpack_from("<BQ", data, pos)
        out.append((pos, pos + 9 + length))
        pos += 9 + length
    return out


@st.composite
def mutated_log(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte mutations, or whole MCAP records duplicated, dropped or swapped."""
    if draw(st.booleans()):
        return draw(mutated(data))
    records = _records(data)
    i = draw(st.integers(0, len(records) - 1))
    j = draw(st.integers(0, len(records) - 1))
    (a, b), (c, d) = records[i], records[j]
    op = draw(st.sampled_from(["duplicate", "drop", "swap"]))
    if op == "duplicate":
        return data[:c] + data[a:b] + data[c:]
    if op == "drop":
        return data[:a] + data[b:]
    if i > j:
        (a, b), (c, d) = (c, d), (a, b)
    return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:]


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_damaged_tick_logs_read_or_raise_ticklog_error(
        plain_log: tuple[Path, dict[int, tuple[np.ndarray, np.ndarray]]],
        data: st.DataObject) -> None:
    path, ticks = plain_log
    damaged = path.with_name("damaged.mcap")
    damaged.write_bytes(data.draw(mutated_log(path.read_bytes())))
    for tick, (obs, act) in read_everything(damaged).items():   # chunk CRCs guard content
        np.testing.assert_array_equal(obs, ticks[tick][0])
        np.testing.assert_array_equal(act, ticks[tick][1])


def test_the_intact_logs_read_completely(
        plain_log: tuple[Path, dict[int, tuple[np.ndarray, np.ndarray]]],
        replayable_log: Path) -> None:
    path, ticks = plain_log
    assert sorted(read_everything(path)) == sorted(ticks)
    with TickLogReader(path) as reader:
        assert not reader.truncated and reader.footer is not None
        assert [s.tick for s in reader.snapshots()] == [2, 5]
    assert sorted(read_everything(replayable_log)) == list(range(6))


@settings(FUZZ, max_examples=80)
@given(data=st.data(), from_tick=st.sampled_from([None, 3, 5]))
def test_replay_of_damaged_logs_returns_or_raises_agentloop_error(
        replayable_log: Path, data: st.DataObject, from_tick: int | None) -> None:
    damaged = replayable_log.with_name("damaged.mcap")
    damaged.write_bytes(data.draw(mutated_log(replayable_log.read_bytes())))
    try:
        result = replay(str(damaged), from_tick=from_tick)
    except AgentloopError as exc:     # TickLogError is one
        assert str(exc)
        event(f"replay: {type(exc).__name__}")
        return
    event(f"replay: {result.ticks} ticks")
    assert result.ticks <= 6
    if result.ticks and not result.truncated:
        assert result.ok



# ------------------------------------------------------- tick logs with well-framed bad content
def _messages(path: Path) -> list[tuple[str, int, int, bytes]]:
    """(topic, sequence, log time, JSON payload) of every message of a log, in order."""
    with open(path, "rb") as f:
        return [(channel.topic, m.sequence, m.log_time, bytes(m.data))
                for _, channel, m in make_reader(f).iter_messages()]


def _write_messages(path: Path, messages: list[tuple[str, int, int, bytes]]) -> None:
    """A tick log with the writer's channels holding exactly ``messages`` (CRCs intact)."""
    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=2048, compression=CompressionType.ZSTD)
        writer.start(library="fuzz")
        channels = {}
        for topic, schema in ticklog._SCHEMAS.items():
            sid = writer.register_schema(schema["title"], "jsonschema", orjson.dumps(schema))
            channels[topic] = writer.register_channel(topic, "json", sid)
        for topic, seq, log_time, payload in messages:
            writer.add_message(channels[topic], log_time, payload, log_time, seq)
        writer.finish()


#: JSON values for log fields; integers stay small (n_agents drives memory) bar a few giants
log_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.sampled_from([2**63, -2**63, 10**20])
    | st.floats(-1e3, 1e3) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)

array_docs = st.fixed_dictionaries(
    {"dtype": st.sampled_from(["|u1", "<i8", "<u8", "<f8", "|b1", "<c16", "|O", "<U3", "|V8",
                               "float", "nope", ">i4"]) | log_values,
     "shape": st.lists(st.integers(-1, 6), max_size=3) | log_values},
    optional={"data": st.lists(st.integers(-300, 300) | st.floats(allow_nan=False), max_size=12)
              | log_values,
              "b64": st.sampled_from(["", "AAAA", "!!", "AAECAwQ="]) | log_values})


@st.composite
def mutated_doc(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with a field replaced (by any JSON value, or a malformed array), removed or
    added, or the whole document replaced."""
    if not isinstance(doc, dict) or draw(st.integers(0, 9)) == 0:
        return draw(log_values)
    doc = dict(doc)
    keys = sorted(doc)
    key = draw(st.sampled_from(keys + ["unknown_field"]))
    op = draw(st.sampled_from(["value", "array", "drop", "nested"]))
    if op == "drop" and key in doc:
        del doc[key]
    elif op == "array":
        doc[key] = draw(array_docs)
    elif op == "nested" and isinstance(doc.get(key), dict):
        doc[key] = draw(mutated_doc(doc[key]))
    elif op == "nested" and isinstance(doc.get(key), list) and doc[key]:
        items = list(doc[key])
        i = draw(st.integers(0, len(items) - 1))
        items[i] = draw(mutated_doc(items[i]))
        doc[key] = items
    else:
        doc[key] = draw(log_values)
    return doc


@settings(FUZZ, max_examples=200)
@given(data=st.data(), from_tick=st.sampled_from([None, 3, 5]))
def test_well_framed_logs_with_bad_content_raise_agentloop_errors(
        replayable_log: Path, data: st.DataObject, from_tick: int | None) -> None:
    """Message contents the framing and CRCs cannot catch (another writer, a bug, tampering):
    reading raises only TickLogError, replay only TickLogError or AgentloopError."""
    messages = _messages(replayable_log)
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(0, len(messages) - 1))
        topic, seq, log_time, payload = messages[i]
        try:
            original = json.loads(payload)
        except ValueError:                  # replaced by raw bytes in the first round
            original = None
        doc = data.draw(mutated_doc(original))
        if data.draw(st.integers(0, 19)) == 0:
            messages[i] = (topic, seq, log_time, data.draw(st.binary(max_size=20)))
        else:
            messages[i] = (topic, seq, log_time, json.dumps(doc).encode())
    damaged = replayable_log.with_name("bad-content.mcap")
    _write_messages(damaged, messages)
    read_everything(damaged)
    try:
        replay(str(damaged), from_tick=from_tick)
    except AgentloopError as exc:
        event(f"replay: {type(exc).__name__}")
        return
    event("replay: returned")
