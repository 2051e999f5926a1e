"""Fuzzing model files and arrays: ``GenerativeModel.load`` / ``from_npz_bytes`` on damaged
saves, random bytes and hand-made ``.npz`` files with bad arrays or meta, the constructor on
random and targeted-bad arrays, and ``from_pymdp`` on random pymdp agents: a valid model or
:class:`ModelError` (naming the array), nothing else.

Property tests (hypothesis, derandomized: the same examples on every run);
``--hypothesis-show-statistics`` shows how the examples split between the outcomes.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine import Agents, GenerativeModel, InferenceConfig
from engine.errors import ModelError
from engine.model.generative_model import NORMALISATION_TOL
from tests.reliability.fuzz_support import (
    ARRAY_NAME,
    FUZZ,
    event,
    mutated,
)
from world.models import grid_model, random_model


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
