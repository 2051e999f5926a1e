"""The fused step kernel (``engine/kernels/fused_step.cu``) without a GPU.

Its host build (the same CUDA source compiled by the C++ compiler, ``kernel="fused"`` on NumPy)
is compared with the Numba kernels and the reference here, with pymdp in
``test_parity_pymdp.py``; the GPU build's source is compiled
by NVRTC (what CuPy uses) where the NVRTC wheel is installed. The CuPy runs are in
``test_gpu_backend.py`` and skip without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import Agents, InferenceConfig, Population
from engine.errors import ConfigError
from engine.kernels import fused
from engine.kernels.array_step import KERNEL_ENV, XpStepper, resolve_kernel
from engine.model.layout import layout_of
from engine.runtime.engine import Engine
from perf.nvrtc import compile_ptx, nvrtc_library
from tests.engine.kernels.test_array_step import CASES, MODELS, TOL, run_parity, two_factor_model
from tests.engine.runtime.test_device_populations import _mixed, _obs, _references
from world.models import grid_model, random_model

pytestmark = pytest.mark.skipif(fused.host_compiler() is None,
                                reason="the fused kernel's host build needs a C++ compiler")


def _random_obs(model, n: int, rng: np.random.Generator) -> np.ndarray:  # noqa: ANN001
    return np.stack([rng.integers(0, o, n) for o in model.num_obs], axis=1)


@pytest.mark.parametrize("selection", ["deterministic", "stochastic"])
@pytest.mark.parametrize(("model_name", "policy_len"), CASES)
def test_host_build_matches_numba(model_name: str, policy_len: int, selection: str) -> None:
    run_parity(MODELS[model_name](), InferenceConfig(policy_len=policy_len,
                                                     action_selection=selection),
               kernel="fused")


@pytest.mark.parametrize("selection", ["deterministic", "stochastic"])
def test_host_build_full_sampling(selection: str) -> None:
    run_parity(two_factor_model(), InferenceConfig(policy_len=2, sampling_mode="full",
                                                   action_selection=selection), kernel="fused")


def test_host_build_without_info_gain_terms() -> None:
    run_parity(grid_model(5), InferenceConfig(use_states_info_gain=False), kernel="fused")
    run_parity(two_factor_model(), InferenceConfig(use_utility=False, policy_len=2),
               kernel="fused")


def test_host_build_on_the_other_tree_walks(monkeypatch: pytest.MonkeyPatch) -> None:
    """One factor with dense B (the generic walk over a single factor), and a grid with the
    sparse walk switched off (what ``perf.gpu --fused-tree generic`` measures)."""
    dense = random_model(np.random.default_rng(3), [4, 3], [6], [3])
    assert not layout_of(dense, InferenceConfig()).B_sparse[0]
    for policy_len in (1, 2):
        run_parity(dense, InferenceConfig(policy_len=policy_len, dtype="float64"),
                   backend="reference", tol=1e-10, kernel="fused")
    monkeypatch.setattr(fused, "SPARSE_TREE", False)
    run_parity(grid_model(5), InferenceConfig(policy_len=2, dtype="float64"),
               backend="reference", tol=1e-10, kernel="fused")


def test_host_build_float64_matches_the_reference() -> None:
    for model, policy_len in ((two_factor_model(), 2), (grid_model(5), 2)):
        run_parity(model, InferenceConfig(policy_len=policy_len, dtype="float64"),
                   backend="reference", tol=1e-10, kernel="fused")


def test_host_build_on_the_generic_path_equals_numba_to_rounding() -> None:
    """On a model that takes the Numba step's generic path the kernel does the same arithmetic
    in the same order: beliefs, q(pi) and G agree to 1e-12 in float64, not just to 1e-4."""
    worst = run_parity(two_factor_model(), InferenceConfig(policy_len=2, dtype="float64"),
                       tol=1e-12, kernel="fused")
    assert worst["ties"] == 0


@pytest.mark.parametrize(("num_iter", "max_depth"), [(1, 2), (4, 1), (10, 1)])
def test_degraded_knobs_match_the_array_path(num_iter: int, max_depth: int) -> None:
    """Fewer fixed-point iterations and a shorter horizon (the ladder's rungs), on a chunk of
    rows only: the rows stepped equal the array path's, the others keep their state."""
    model, cfg = two_factor_model(), InferenceConfig(policy_len=2, dtype="float64")
    array = XpStepper(model, 30, cfg, seed=3, kernel="array")
    fast = XpStepper(model, 30, cfg, seed=3, kernel="fused")
    rng = np.random.default_rng(7)
    for tick in range(4):
        obs = _random_obs(model, 30, rng)
        before = fast.qs_flat.copy()
        for stepper in (array, fast):
            stepper.step_rows(stepper.check_observations(obs), 5, 25, tick, num_iter=num_iter,
                              max_depth=max_depth)
        np.testing.assert_array_equal(fast.actions, array.actions)
        for name in ("qs_flat", "q_pi", "G"):
            np.testing.assert_allclose(getattr(fast, name), getattr(array, name), rtol=0,
                                       atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(fast.qs_flat[:5], before[:5])
        np.testing.assert_array_equal(fast.qs_flat[25:], before[25:])


def test_agents_facade_and_resets() -> None:
    """``Agents(backend="xp-numpy", xp_kernel="fused")``; resets go through the same arrays
    the kernel reads."""
    model, cfg = grid_model(5), InferenceConfig(action_selection="stochastic")
    ref = Agents(model, 25, cfg, seed=3)
    fast = Agents(model, 25, cfg, seed=3, backend="xp-numpy", xp_kernel="fused")
    assert fast._xp.kernel == "fused"
    rng = np.random.default_rng(2)
    for t in range(6):
        if t == 3:
            ref.reset(np.array([1, 4, 9]))
            fast.reset(np.array([1, 4, 9]))
        obs = _random_obs(model, 25, rng)
        np.testing.assert_array_equal(ref.step(obs), fast.step(obs))
        assert np.abs(ref.q_pi - fast.q_pi).max() < TOL
        assert np.abs(ref.qs[0] - fast.qs[0]).max() < TOL


@pytest.mark.parametrize("workers", [0, 2])
def test_engine_device_population_on_the_fused_kernel(monkeypatch: pytest.MonkeyPatch,
                                                      workers: int) -> None:
    """``$AGENTLOOP_XP_KERNEL=fused`` reaches the engine's device populations: a CPU and a
    fused device population each equal ``Agents`` on their model."""
    monkeypatch.setenv(KERNEL_ENV, "fused")
    populations = _mixed("xp-numpy")
    refs = _references(populations, seed=4)
    with Engine(populations=populations, workers=workers, seed=4, beliefs="float",
                refresh_every=2) as engine:
        assert engine.devices[1].stepper.kernel == "fused"
        for tick in range(4):
            obs = [_obs(p.model, p.n_agents, 10 * tick + i) for i, p in enumerate(populations)]
            for p, ref, ours, o in zip(populations, refs, engine.step(obs), obs, strict=True):
                np.testing.assert_array_equal(ours, ref.step(o))
                assert np.abs(engine.population(p.name).q_pi - ref.q_pi).max() < TOL


def test_kernel_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    assert resolve_kernel("auto") == "array"
    assert resolve_kernel("fused") == "fused"
    monkeypatch.setenv(KERNEL_ENV, "fused")
    assert resolve_kernel("auto") == "fused" and resolve_kernel("array") == "array"
    monkeypatch.setenv(KERNEL_ENV, "warp")
    with pytest.raises(ConfigError, match=r"\$AGENTLOOP_XP_KERNEL must be one of"):
        resolve_kernel("auto")
    with pytest.raises(ConfigError, match="kernel must be one of"):
        XpStepper(grid_model(5), 4, kernel="fast")


def test_auto_leaves_learning_populations_on_the_array_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``$AGENTLOOP_XP_KERNEL=fused`` set for a whole run does not break learning populations:
    "auto" keeps them on the array path (only an explicit "fused" is refused)."""
    from engine.kernels.array_learning import make_xp_stepper  # noqa: PLC0415

    monkeypatch.setenv(KERNEL_ENV, "fused")
    model = random_model(np.random.default_rng(0), [3], [3], [2], with_pA=True)
    assert make_xp_stepper(model, 4, InferenceConfig(learn_A=True)).kernel == "array"
    assert make_xp_stepper(model, 4, InferenceConfig()).kernel == "fused"


def test_learning_is_refused() -> None:
    from engine.kernels.array_learning import make_xp_stepper  # noqa: PLC0415

    model = random_model(np.random.default_rng(0), [3], [3], [2], with_pA=True)
    with pytest.raises(ConfigError, match="kernel 'fused' does not run Dirichlet learning"):
        make_xp_stepper(model, 4, InferenceConfig(learn_A=True), kernel="fused")


def test_a_model_too_large_for_one_thread_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "LOCAL_BYTES_LIMIT", 1000)
    with pytest.raises(ConfigError, match="bytes of local arrays per thread.*kernel='array'"):
        XpStepper(grid_model(5), 4, kernel="fused")


def test_no_compiler_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setattr(fused, "host_compiler", lambda: None)
    monkeypatch.setattr(fused, "_host_libraries", {})
    monkeypatch.setenv("AGENTLOOP_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        XpStepper(grid_model(5), 4, kernel="fused")


def test_an_unwritable_cache_is_one_clear_error(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path) -> None:  # noqa: ANN001
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(fused, "_host_libraries", {})
    monkeypatch.setenv("AGENTLOOP_CACHE", str(blocker))
    with pytest.raises(ConfigError, match="set AGENTLOOP_CACHE to a writable folder"):
        XpStepper(grid_model(5), 4, kernel="fused")


def test_host_builds_are_cached_on_disk(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setattr(fused, "_host_libraries", {})
    monkeypatch.setenv("AGENTLOOP_CACHE", str(tmp_path))
    XpStepper(grid_model(5), 4, kernel="fused")
    built = sorted((tmp_path / "fused").glob("fused_step-*.so"))
    assert len(built) == 1
    monkeypatch.setattr(fused, "_host_libraries", {})
    XpStepper(grid_model(5), 4, kernel="fused")          # the same build, loaded again
    assert sorted((tmp_path / "fused").glob("*")) == built


# ------------------------------------------------------------------------------ NVRTC
NVRTC = nvrtc_library()


@pytest.mark.skipif(NVRTC is None, reason="NVRTC is not installed (nvidia-cuda-nvrtc-cu12)")
@pytest.mark.parametrize(("model_name", "config"), [
    ("grid-10", InferenceConfig()),
    ("grid-10", InferenceConfig(policy_len=3, dtype="float64")),
    ("two_factor", InferenceConfig(policy_len=2, sampling_mode="full")),
    ("dense", InferenceConfig(policy_len=2, action_selection="stochastic")),
])
def test_gpu_source_compiles_with_nvrtc(model_name: str, config: InferenceConfig) -> None:
    """The source CuPy's RawModule will compile on a GPU machine, with its options, for an
    H100 (compute_90): no error and no warning."""
    model = {"grid-10": lambda: grid_model(10), "two_factor": two_factor_model,
             "dense": lambda: random_model(np.random.default_rng(3), [4, 3], [6], [3])}[
        model_name]()
    layout = layout_of(model, config)
    _, _, offsets = fused.pack_layout(layout)
    for compute in ("float64", "float32"):
        source = fused.build_source(layout, np.dtype(layout.dtype), np.dtype(compute), offsets)
        options = (*fused.NVRTC_OPTIONS, *fused.CUPY_ADDED_OPTIONS, "-arch=compute_90")
        rc, log, ptx = compile_ptx(NVRTC, source, options)
        assert rc == 0, log
        assert "warning" not in log.lower(), log
        assert ".entry fused_step" in ptx


def test_population_keeps_its_backend_name_with_the_fused_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel is a property of the array backend, not a backend of its own."""
    monkeypatch.setenv(KERNEL_ENV, "fused")
    with Engine(populations=[Population("p", grid_model(5), 8, backend="xp-numpy")],
                workers=0) as engine:
        assert engine.backends == ["xp-numpy"]
        engine.step(np.zeros((8, 2), dtype=np.int64))
