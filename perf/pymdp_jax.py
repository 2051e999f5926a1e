"""pymdp 1.x (JAX) peer for ``python -m perf``: a child process that times batched agent steps.

It runs as a script in its own virtual environment (:data:`VENV`, made by :func:`ensure_venv`)
and imports only the standard library, NumPy, JAX and pymdp, never the project. It answers JSON
lines on stdin (``hello``, ``setup``, ``time``, ``drop``, ``quit``); ``setup`` builds a batched
``Agent`` or (``"kernel": "vmap"``) the functional kernels under ``jax.jit(jax.vmap(...))`` with
one shared model, with the step's settings from its ``params`` (:data:`DEFAULT_PARAMS` fill the
rest), in a ``slot`` (default: the kernel's name) that ``time`` and ``drop`` name, so both kinds
live side by side. The protocol and the settings are in docs/zoo.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Where the pymdp 1.x virtual environment lives: the user's cache folder
#: (``$XDG_CACHE_HOME`` or ``~/.cache``), not the source tree (JAX takes about 850 MB).
VENV = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "agentloop" / "venv-pymdp1")
#: What :func:`ensure_venv` installs there.
REQUIREMENT = "inferactively-pymdp>=1.0"
#: The step's settings when ``setup`` names none (pymdp 0.0.7.1's defaults, deterministic).
DEFAULT_PARAMS: dict[str, Any] = {"gamma": 16.0, "alpha": 16.0, "num_iter": 10,
                                  "sampling_mode": "marginal",
                                  "action_selection": "deterministic"}


def venv_python(venv: Path = VENV) -> Path:
    """The interpreter of the pymdp 1.x virtual environment."""
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV, install: bool = True, timeout_s: float = 900.0
                ) -> tuple[Path | None, str]:
    """The pymdp 1.x interpreter, creating the venv and installing pymdp 1.x when missing.

    Returns ``(python, "")`` when ``import pymdp.agent, jax`` works there, else
    ``(None, reason)`` (one line). The install log is ``venv/install.log``.
    """
    python = venv_python(venv)
    _ignore_in_git(venv)
    probe = [str(python), "-c", "import jax, pymdp.agent, importlib.metadata as m; "
             "v = m.version('inferactively-pymdp'); assert int(v.split('.')[0]) >= 1, v"]
    if python.exists() and _ok(probe):
        return python, ""
    if not install:
        return None, f"no working pymdp 1.x venv at {venv} (install disabled)"
    log_path = venv / "install.log"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           capture_output=True, timeout=300)
            _ignore_in_git(venv)
        with open(log_path, "w") as out:
            done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-"
                                   "check", REQUIREMENT], stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout_s)
        if done.returncode != 0:
            return None, f"pip install {REQUIREMENT!r} failed (exit {done.returncode}); " \
                         f"see {log_path}"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create the venv {venv}: {' '.join(str(exc).split())}"
    if not _ok(probe):
        return None, f"pymdp 1.x installed in {venv} but 'import jax, pymdp.agent' fails"
    return python, ""


def _ignore_in_git(venv: Path) -> None:
    """Make git (and linters that follow .gitignore) skip the venv, as Python 3.13's venv does."""
    if venv.is_dir() and not (venv / ".gitignore").exists():
        try:
            (venv / ".gitignore").write_text("# created by perf.pymdp_jax\n*\n")
        except OSError:
            pass


def _ok(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def write_model(path: Path, A: list[Any], B: list[Any], C: list[Any], D: list[Any],
                A_factor_list: list[list[int]], control_fac_idx: list[int],
                E: Any = None, policies: Any = None) -> None:
    """Write a model for the child: ``A0.., B0.., C0.., D0..`` arrays and a ``meta`` JSON, and
    optionally ``E`` and ``policies`` ``(P, L, F)`` (the functional kernels use them)."""
    import numpy as np

    arrays: dict[str, Any] = {}
    for name, items in (("A", A), ("B", B), ("C", C), ("D", D)):
        for i, a in enumerate(items):
            arrays[f"{name}{i}"] = np.asarray(a, dtype=np.float64)
    if E is not None:
        arrays["E"] = np.asarray(E, dtype=np.float64)
    if policies is not None:
        arrays["policies"] = np.asarray(policies, dtype=np.int64)
    meta = {"num_modalities": len(A), "num_factors": len(B), "A_factor_list": A_factor_list,
            "control_fac_idx": control_fac_idx}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


# ------------------------------------------------------------------------------------ child
def _load_model(model_path: str) -> tuple[Any, dict[str, Any], list[Any], list[Any], list[Any],
                                          list[Any]]:
    """The model file's arrays, its metadata, and A, B, C, D as float32 JAX arrays."""
    import jax.numpy as jnp
    import numpy as np

    data = np.load(model_path)
    meta = json.loads(bytes(data["meta"]).decode())
    M, F = meta["num_modalities"], meta["num_factors"]

    def arrays(name: str, count: int) -> list[Any]:
        return [jnp.asarray(data[f"{name}{i}"], dtype=jnp.float32) for i in range(count)]

    return data, meta, arrays("A", M), arrays("B", F), arrays("C", M), arrays("D", F)


def step_params(given: dict[str, Any] | None) -> dict[str, Any]:
    """:data:`DEFAULT_PARAMS` updated by ``given`` (``ValueError`` naming a bad one)."""
    out = dict(DEFAULT_PARAMS)
    unknown = sorted(set(given or {}) - set(out))
    if unknown:
        raise ValueError(f"unknown step params {unknown}; known: {sorted(out)}")
    out.update(given or {})
    out["gamma"], out["alpha"] = float(out["gamma"]), float(out["alpha"])
    out["num_iter"] = int(out["num_iter"])
    if out["num_iter"] < 1:
        raise ValueError(f"num_iter must be >= 1, got {out['num_iter']}")
    if out["sampling_mode"] not in ("marginal", "full"):
        raise ValueError(f"sampling_mode must be 'marginal' or 'full', got "
                         f"{out['sampling_mode']!r}")
    if out["action_selection"] not in ("deterministic", "stochastic"):
        raise ValueError(f"action_selection must be 'deterministic' or 'stochastic', got "
                         f"{out['action_selection']!r}")
    return out


class _Batch:
    """One batch of pymdp 1.x agents and its jitted step."""

    def __init__(self, model_path: str, policy_len: int, n: int, seed: int,
                 params: dict[str, Any]) -> None:
        import equinox as eqx
        import jax
        import jax.random as jr
        import numpy as np
        from pymdp.agent import Agent

        data, meta, A, B, C, D = _load_model(model_path)
        F = meta["num_factors"]
        self.num_obs = [int(a.shape[0]) for a in A]
        self.n = n
        self.rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        agent = Agent(A=A, B=B, C=C, D=D, A_dependencies=meta["A_factor_list"],
                      B_dependencies=[[f] for f in range(F)],
                      control_fac_idx=meta["control_fac_idx"], policy_len=policy_len,
                      gamma=params["gamma"], alpha=params["alpha"],
                      num_iter=params["num_iter"], batch_size=n,
                      action_selection=params["action_selection"],
                      sampling_mode=params["sampling_mode"],
                      use_utility=True, use_states_info_gain=True, inference_algo="fpi")
        jax.block_until_ready(jax.tree_util.tree_leaves(eqx.filter(agent, eqx.is_array)))
        self.create_s = time.perf_counter() - t0
        self.bytes_per_agent = sum(int(leaf.nbytes) for leaf in jax.tree_util.tree_leaves(
            eqx.filter(agent, eqx.is_array))) / n

        @eqx.filter_jit
        def step(agent: Any, obs: list[Any], prior: list[Any], key: Any
                 ) -> tuple[Any, list[Any], Any]:
            qs = agent.infer_states(obs, prior)
            q_pi, _neg_efe = agent.infer_policies(qs)
            keys = jr.split(key, agent.batch_size + 1)
            action = agent.sample_action(q_pi, rng_key=keys[1:])
            return action, agent.update_empirical_prior(action, qs), keys[0]

        self._jax, self._step, self.agent = jax, step, agent
        self.prior, self.key = list(agent.D), jr.PRNGKey(seed)
        t0 = time.perf_counter()
        self.step_once()
        self.compile_s = time.perf_counter() - t0

    def _obs(self) -> list[Any]:
        return [self._jax.numpy.asarray(self.rng.integers(0, o, size=self.n)) for o in
                self.num_obs]

    def step_once(self) -> float:
        """One step on fresh random observations; the seconds it took (observations excluded)."""
        obs = self._obs()
        self._jax.block_until_ready(obs)
        t0 = time.perf_counter()
        action, self.prior, self.key = self._step(self.agent, obs, self.prior, self.key)
        self._jax.block_until_ready((action, self.prior))
        return time.perf_counter() - t0


class _Vmapped:
    """``n`` agents stepped by pymdp 1.x's functional kernels under ``jax.jit(jax.vmap(...))``:
    ONE shared model (``in_axes=None`` for A, B, C, E), mapped over observations and beliefs."""

    def __init__(self, model_path: str, policy_len: int, n: int, seed: int,
                 params: dict[str, Any]) -> None:
        import jax
        import jax.numpy as jnp
        import jax.random as jr
        import numpy as np
        from pymdp import control, inference

        data, meta, A, B, C, D = _load_model(model_path)
        F = meta["num_factors"]
        num_controls = [int(b.shape[-1]) for b in B]
        if "policies" in data and int(data["policies"].shape[1]) == policy_len:
            policies = jnp.asarray(data["policies"], dtype=jnp.int32)
        else:
            policies = control.construct_policies([int(b.shape[0]) for b in B], num_controls,
                                                  policy_len, meta["control_fac_idx"])
        P = int(policies.shape[0])
        E = jnp.asarray(data["E"], dtype=jnp.float32) if "E" in data and \
            int(data["E"].shape[0]) == P else jnp.full((P,), 1.0 / P, dtype=jnp.float32)
        A_deps = [list(x) for x in meta["A_factor_list"]]
        B_deps = [[f] for f in range(F)]
        self.num_obs = [int(a.shape[0]) for a in A]
        self.n = n
        self.rng = np.random.default_rng(seed)
        t0 = time.perf_counter()

        select, how, alpha = params["action_selection"], params["sampling_mode"], params["alpha"]

        def one(A: Any, B: Any, C: Any, E: Any, obs: list[Any], prior: list[Any], key: Any
                ) -> tuple[Any, list[Any]]:
            qs = inference.update_posterior_states(
                A, B, obs, None, prior=prior, A_dependencies=A_deps, B_dependencies=B_deps,
                num_iter=params["num_iter"], method="fpi", distr_obs=False)
            qs = [q[-1] for q in qs]
            q_pi, _neg_efe = control.update_posterior_policies(
                policies, qs, A, B, C, E, None, None, A_deps, B_deps, gamma=params["gamma"],
                use_utility=True, use_states_info_gain=True, use_param_info_gain=False)
            if how == "marginal":
                action = control.sample_action(policies, num_controls, q_pi,
                                               action_selection=select, alpha=alpha,
                                               rng_key=key)
            else:
                action = control.sample_policy(policies, q_pi, action_selection=select,
                                               alpha=alpha, rng_key=key)
            return action, control.compute_expected_state(qs, B, action, B_deps)

        sampled = select == "stochastic"      # deterministic steps split no keys
        mapped = jax.vmap(one, in_axes=(None, None, None, None, 0, 0, 0 if sampled else None))

        def step(A: Any, B: Any, C: Any, E: Any, obs: list[Any], prior: list[Any], key: Any
                 ) -> tuple[Any, list[Any], Any]:
            if not sampled:
                action, prior = mapped(A, B, C, E, obs, prior, None)
                return action, prior, key
            keys = jr.split(key, n + 1)
            action, prior = mapped(A, B, C, E, obs, prior, keys[1:])
            return action, prior, keys[0]

        self._step = jax.jit(step)
        self._jax, self._model, self.key = jax, (A, B, C, E), jr.PRNGKey(seed)
        self.prior = [jnp.tile(d, (n, 1)) for d in D]
        jax.block_until_ready(self.prior)
        self.create_s = time.perf_counter() - t0
        self.bytes_per_agent = float(sum(int(q.nbytes) for q in self.prior)) / n
        t0 = time.perf_counter()
        self.step_once()
        self.compile_s = time.perf_counter() - t0

    def step_once(self) -> float:
        """One step on fresh random observations; the seconds it took (observations excluded)."""
        obs = [self._jax.numpy.asarray(self.rng.integers(0, o, size=self.n), dtype="int32")
               for o in self.num_obs]
        self._jax.block_until_ready(obs)
        t0 = time.perf_counter()
        action, self.prior, self.key = self._step(*self._model, obs, self.prior, self.key)
        self._jax.block_until_ready((action, self.prior))
        return time.perf_counter() - t0


def _serve() -> int:
    batches: dict[str, _Batch | _Vmapped] = {}
    last = ""                              # the slot a ``time`` without one times
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                _answer({"ok": True})
                return 0
            if op == "hello":
                import importlib.metadata as md

                import jax
                import numpy as np

                _answer({"ok": True, "pymdp": md.version("inferactively-pymdp"),
                         "jax": jax.__version__, "numpy": np.__version__,
                         "device": str(jax.devices()[0]), "pid": os.getpid()})
            elif op == "setup":
                kind = req.get("kernel", "agent")
                if kind not in ("agent", "vmap"):
                    raise ValueError(f"unknown kernel {kind!r} (agent or vmap)")
                slot = str(req.get("slot", kind))
                batches.pop(slot, None)            # free the old one before building
                last = "" if last == slot else last
                params = step_params(req.get("params"))
                batch = (_Vmapped if kind == "vmap" else _Batch)(
                    req["model"], int(req["policy_len"]), int(req["n"]), int(req.get("seed", 0)),
                    params)
                batches[slot], last = batch, slot
                _answer({"ok": True, "slot": slot, "create_s": batch.create_s,
                         "compile_s": batch.compile_s, "bytes_per_agent": batch.bytes_per_agent,
                         "params": params})
            elif op == "time":
                slot = str(req.get("slot", last))
                if slot not in batches:
                    raise RuntimeError(f"time before setup (slot {slot!r}; set up: "
                                       f"{sorted(batches)})")
                times = [batches[slot].step_once() for _ in range(int(req["steps"]))]
                _answer({"ok": True, "slot": slot, "kernel": _kernel_of(batches[slot]),
                         "times": times})
            elif op == "drop":
                slot = str(req["slot"])
                _answer({"ok": True, "dropped": batches.pop(slot, None) is not None})
                last = "" if last == slot else last
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # noqa: BLE001 - every failure is answered, the child lives on
            _answer({"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                     [:500]})
    return 0


def _kernel_of(batch: _Batch | _Vmapped) -> str:
    return "vmap" if isinstance(batch, _Vmapped) else "agent"


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(_serve())
