"""The array (xp) backend of ``engine/kernels/array_step.py`` and backend selection.

The batched array code runs here on NumPy (``xp=numpy``, the path CI tests) and is compared with
the Numba kernels: float32 state, qs / q(pi) / G to 1e-4 (they agree to float32 rounding) and
actions identical except at exact ties of the action marginal (which the test checks, then
re-synchronises the xp population's last action so the two keep stepping the same history).
The CuPy run of the same parity skips without CuPy and a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import Agents, InferenceConfig
from engine.errors import ConfigError, ObservationError
from engine.kernels import backends
from engine.kernels.array_learning import XpLearningStepper, make_xp_stepper
from engine.kernels.array_stages import to_host, uniforms_xp
from engine.kernels.array_step import XpStepper
from engine.kernels.backends import cupy_available, resolve_backend
from engine.kernels.rng import uniforms
from engine.model.generative_model import GenerativeModel
from world.models import grid_model, random_model

TOL = 1e-4
#: Action marginals closer than this count as a tie (argmax decided by rounding).
TIE = 1e-5
N_AGENTS = 40
TICKS = 20

HAVE_CUPY, CUPY_REASON = cupy_available()


def two_factor_model() -> GenerativeModel:
    """Two factors, A on factor subsets ([0] and [0, 1]), factor 1 uncontrolled."""
    return random_model(np.random.default_rng(11), [3, 4], [3, 4], [3, 1],
                        A_factor_list=[[0], [0, 1]])


MODELS = {"grid5": lambda: grid_model(5), "two_factor": two_factor_model}


def marginals(q_pi: np.ndarray, policies: np.ndarray, num_controls: tuple[int, ...],
              f: int) -> np.ndarray:
    """pymdp's action marginal of factor ``f`` from q(pi)."""
    marg = q_pi.astype(np.float64) @ np.eye(num_controls[f])[policies[:, 0, f]]
    return marg / marg.sum(axis=1, keepdims=True)


def run_parity(model: GenerativeModel, config: InferenceConfig, xp: object = np,
               seed: int = 5, backend: str = "numba", tol: float = TOL,
               kernel: str = "array") -> dict[str, float]:
    """Step ``Agents`` (Numba by default) and an ``XpStepper`` (its ``kernel``) on the same
    random observations; return the largest absolute differences (asserting them and the
    actions on the way)."""
    rng = np.random.default_rng(seed)
    ref = Agents(model, N_AGENTS, config, seed=seed, agent_id_offset=100,
                 backend=backend)  # type: ignore[arg-type]
    xps = XpStepper(model, N_AGENTS, config, seed=seed, xp=xp, agent_id_offset=100,  # type: ignore[arg-type]
                    kernel=kernel)
    worst = {"qs": 0.0, "q_pi": 0.0, "G": 0.0, "ties": 0.0}
    for _ in range(TICKS):
        obs = np.stack([rng.integers(0, o, N_AGENTS) for o in model.num_obs], axis=1)
        want = ref.step(obs).copy()
        got = to_host(xps.step(obs))
        for name, a, b in (("qs", ref._qs, xps.qs_flat), ("q_pi", ref.q_pi, xps.q_pi),
                           ("G", ref.G, xps.G)):
            worst[name] = max(worst[name], float(np.abs(a - to_host(b)).max()))
        differ = np.nonzero((want != got).any(axis=1))[0]
        for i in differ:
            if config.sampling_mode == "full":
                gap = abs(float(ref.q_pi[i].max()) - float(np.sort(ref.q_pi[i])[-2]))
                assert gap < TIE, f"agent {i}: actions {want[i]} vs {got[i]}, q_pi gap {gap}"
                continue
            for f in range(model.num_factors):
                if want[i, f] != got[i, f]:
                    marg = marginals(ref.q_pi[i:i + 1], ref.policies, model.num_controls, f)[0]
                    gap = abs(marg[want[i, f]] - marg[got[i, f]])
                    assert gap < TIE, f"agent {i} factor {f}: {want[i]} vs {got[i]}, gap {gap}"
        worst["ties"] += differ.size
        if differ.size:                  # same history on both sides despite the tie-break
            xps.load_state(to_host(xps.qs_flat)[differ], want[differ], np.ones(differ.size),
                           rows=differ)
    assert worst["qs"] < tol and worst["q_pi"] < tol and worst["G"] < tol, worst
    return worst


CASES = [("grid5", 1), ("grid5", 2), ("two_factor", 1), ("two_factor", 2)]


@pytest.mark.parametrize("selection", ["deterministic", "stochastic"])
@pytest.mark.parametrize(("model_name", "policy_len"), CASES)
def test_numpy_parity_with_numba(model_name: str, policy_len: int, selection: str) -> None:
    model = MODELS[model_name]()
    run_parity(model, InferenceConfig(policy_len=policy_len, action_selection=selection))


@pytest.mark.parametrize("selection", ["deterministic", "stochastic"])
def test_numpy_parity_full_sampling(selection: str) -> None:
    run_parity(two_factor_model(), InferenceConfig(policy_len=2, sampling_mode="full",
                                                   action_selection=selection))


def test_numpy_parity_without_info_gain_terms() -> None:
    run_parity(grid_model(5), InferenceConfig(use_states_info_gain=False))
    run_parity(two_factor_model(), InferenceConfig(use_utility=False, policy_len=2))


def test_float64_parity_with_the_reference() -> None:
    for model, policy_len in ((two_factor_model(), 2), (grid_model(5), 2)):
        run_parity(model, InferenceConfig(policy_len=policy_len, dtype="float64"),
                   backend="reference", tol=1e-10)


def test_uniforms_match_the_cpu_stream() -> None:
    ids = np.array([0, 1, 7, 99_999, 2**40 + 3], dtype=np.int64)
    for seed, tick, stream in ((0, 0, 0), (5, 17, 1), (2**31 - 1, 123_456, 3)):
        want = np.empty(ids.size)
        uniforms(seed, ids, tick, stream, want)
        assert np.array_equal(uniforms_xp(np, seed, ids, tick, stream), want)


def test_chunked_step_matches_one_chunk() -> None:
    model, cfg = two_factor_model(), InferenceConfig(policy_len=2, action_selection="stochastic")
    whole = XpStepper(model, 30, cfg, seed=1)
    chunked = XpStepper(model, 30, cfg, seed=1, scratch_bytes=1)
    assert chunked.chunk_size == 1 and whole.chunk_size >= 30
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs = np.stack([rng.integers(0, o, 30) for o in model.num_obs], axis=1)
        assert np.array_equal(whole.step(obs), chunked.step(obs))
        assert np.abs(whole.q_pi - chunked.q_pi).max() < 1e-6


def test_float32_compute_agrees() -> None:
    model, cfg = grid_model(5), InferenceConfig(policy_len=2)
    exact = XpStepper(model, 30, cfg, seed=2)
    fast = XpStepper(model, 30, cfg, seed=2, compute_dtype="float32")
    rng = np.random.default_rng(1)
    for _ in range(5):
        obs = np.stack([rng.integers(0, o, 30) for o in model.num_obs], axis=1)
        actions = exact.step(obs)
        fast.step(obs)
        assert np.abs(exact.q_pi - fast.q_pi).max() < 1e-3
        assert np.abs(exact.qs_flat - fast.qs_flat).max() < 1e-4
        fast.load_state(exact.qs_flat, actions, exact.started)


def test_agents_facade_on_xp_numpy_matches_numba() -> None:
    model, cfg = grid_model(5), InferenceConfig(action_selection="stochastic")
    numba_agents = Agents(model, 25, cfg, seed=3)
    xp_agents = Agents(model, 25, cfg, seed=3, backend="xp-numpy")
    assert xp_agents.backend == "xp-numpy"
    rng = np.random.default_rng(2)
    for t in range(6):
        if t == 3:                                        # a new episode for some agents
            for a in (numba_agents, xp_agents):
                a.reset(np.array([1, 4, 9]))
        obs = np.stack([rng.integers(0, o, 25) for o in model.num_obs], axis=1)
        assert np.array_equal(numba_agents.step(obs), xp_agents.step(obs))
        assert np.abs(numba_agents.qs[0] - xp_agents.qs[0]).max() < TOL
        assert np.abs(numba_agents.q_pi - xp_agents.q_pi).max() < TOL
        assert np.abs(numba_agents.G - xp_agents.G).max() < TOL
    xp_agents.reset()
    assert xp_agents.tick == 0 and np.allclose(xp_agents.qs[0], 1 / 25)


@pytest.mark.parametrize("bad", [
    np.array([[0, 0]] * 7 + [[25, 0]]),               # position out of range (agent 7)
    np.array([[0, -1]] * 8),                          # negative
    np.zeros((8, 3), dtype=np.int64),                 # wrong shape
    np.zeros((8, 2), dtype=np.float64),               # not integers
    [[0, 0]] * 8,                                     # not an array
])
def test_bad_observations_raise_and_change_nothing(bad: object) -> None:
    model = grid_model(5)
    xps = XpStepper(model, 8, InferenceConfig(), seed=0)
    xps.step(np.zeros((8, 2), dtype=np.int64))
    before = xps.qs_flat.copy(), xps.tick
    with pytest.raises(ObservationError):
        xps.step(bad)
    assert np.array_equal(xps.qs_flat, before[0]) and xps.tick == before[1]
    agents = Agents(model, 8, backend="xp-numpy")
    with pytest.raises(ObservationError):
        agents.step(bad)  # type: ignore[arg-type]


def test_out_of_range_message_names_agent_and_modality() -> None:
    xps = XpStepper(grid_model(5), 8, InferenceConfig())
    obs = np.zeros((8, 2), dtype=np.int64)
    obs[6, 1] = 3
    with pytest.raises(ObservationError, match="agent 6, modality 1"):
        xps.step(obs)


def test_learning_runs_in_its_own_stepper() -> None:
    """Dirichlet learning and the parameter information gain run on the xp backend in
    XpLearningStepper (tested against pymdp in test_parity_pymdp); XpStepper refuses them."""
    model = random_model(np.random.default_rng(0), [3], [3], [2], with_pA=True, with_pB=True)
    with pytest.raises(ConfigError, match="XpLearningStepper"):
        XpStepper(model, 4, InferenceConfig(learn_A=True))
    assert isinstance(make_xp_stepper(model, 4, InferenceConfig(learn_B=True)),
                      XpLearningStepper)
    assert isinstance(make_xp_stepper(model, 4, InferenceConfig(use_param_info_gain=True)),
                      XpLearningStepper)
    plain = random_model(np.random.default_rng(0), [3], [3], [2])
    assert type(make_xp_stepper(plain, 4, InferenceConfig(use_param_info_gain=True))) is XpStepper
    agents = Agents(model, 4, InferenceConfig(learn_A=True, learn_B=True), backend="xp-numpy")
    agents.step(np.zeros((4, 1), dtype=np.int64))
    assert agents.pA[0].shape == (4, 3, 3) and agents.pB[0].shape == (4, 3, 3, 2)


# ------------------------------------------------------------------------------ selection
def test_cupy_available_never_raises() -> None:
    ok, reason = cupy_available()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason


def test_cupy_available_reports_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)   # import cupy -> ImportError
    ok, reason = cupy_available()
    assert not ok and "CuPy" in reason


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy and a GPU are available here")
def test_auto_picks_numba_without_a_gpu() -> None:
    assert resolve_backend("auto") == "numba"
    assert Agents(grid_model(5), 4, backend="auto").backend == "numba"


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy and a GPU are available here")
def test_cupy_without_a_gpu_is_one_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        Agents(grid_model(5), 4, backend="cupy")
    message = str(info.value)
    assert "CuPy" in message and "GPU" in message and "backend='numba'" in message
    assert "\n" not in message


def test_auto_prefers_cupy_only_when_usable_and_supported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "cupy_available", lambda: (True, "1 CUDA device(s)"))
    assert resolve_backend("auto") == "cupy"
    assert resolve_backend("auto", InferenceConfig(learn_B=True)) == "cupy"
    monkeypatch.setattr(backends, "cupy_available", lambda: (False, "no CUDA device found"))
    assert resolve_backend("auto") == "numba"
    for name in ("numba", "reference", "xp-numpy"):
        assert resolve_backend(name) == name


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="backend must be one of"):
        Agents(grid_model(5), 4, backend="tpu")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ on the GPU
@pytest.mark.skipif(not HAVE_CUPY, reason=f"needs CuPy and a GPU: {CUPY_REASON}")
@pytest.mark.parametrize("kernel", ["array", "fused"])
@pytest.mark.parametrize("selection", ["deterministic", "stochastic"])
@pytest.mark.parametrize(("model_name", "policy_len"), CASES)
def test_cupy_parity_with_numba(model_name: str, policy_len: int, selection: str,
                                kernel: str) -> None:
    import cupy  # noqa: PLC0415

    model = MODELS[model_name]()
    run_parity(model, InferenceConfig(policy_len=policy_len, action_selection=selection),
               xp=cupy, kernel=kernel)
    ids = np.arange(50, dtype=np.int64)
    want = np.empty(50)
    uniforms(9, ids, 4, 1, want)
    assert np.array_equal(to_host(uniforms_xp(cupy, 9, ids, 4, 1)), want)


@pytest.mark.skipif(not HAVE_CUPY, reason=f"needs CuPy and a GPU: {CUPY_REASON}")
def test_cupy_agents_facade() -> None:
    model = grid_model(5)
    cpu_agents = Agents(model, 16, seed=1)
    gpu_agents = Agents(model, 16, seed=1, backend="cupy")
    obs = np.zeros((16, 2), dtype=np.int64)
    assert np.array_equal(cpu_agents.step(obs), gpu_agents.step(obs))
    assert np.abs(cpu_agents.q_pi - gpu_agents.q_pi).max() < TOL


def test_learning_in_chunks_matches_one_chunk() -> None:
    """Per-agent parameters are sliced by row chunk: many small chunks give the same numbers."""
    model = random_model(np.random.default_rng(4), [3, 2], [3, 2], [2, 2], with_pA=True,
                         with_pB=True)
    config = InferenceConfig(learn_A=True, learn_B=True, policy_len=2)
    whole = XpLearningStepper(model, 40, config, seed=3)
    pieces = XpLearningStepper(model, 40, config, seed=3, scratch_bytes=1)
    assert pieces.chunk_size == 1 < whole.chunk_size
    rng = np.random.default_rng(5)
    for _ in range(4):
        obs = np.stack([rng.integers(0, o, 40) for o in model.num_obs], axis=1)
        np.testing.assert_array_equal(whole.step(obs), pieces.step(obs))
    np.testing.assert_allclose(whole.q_pi, pieces.q_pi, rtol=0, atol=1e-12)
    for a, b in zip(whole.pA + whole.pB, pieces.pA + pieces.pB, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
