"""Check the bench's pymdp 1.x jit(vmap) peer against a plain JAX user's setup (issue 16).

``python -m perf.vmap_check MODEL:POLICY_LEN:AGENTS ... [--seconds S] [--x64]`` writes each
model for the pymdp 1.x venv (:mod:`perf.pymdp_jax`), then, in that venv, steps two
populations in turn, one step each, and prints agent-steps/s (medians): the bench's peer
(``_Vmapped``: the model passed as unbatched arguments) and the whole step written as one
``jax.jit(jax.vmap(step))`` over (observations, beliefs) with the model closed over as constants.
``--x64`` turns on ``jax_enable_x64`` in the child (the closed-over form then builds its model
in float64; the bench's peer loads float32 arrays either way). Findings: ``perf/RESULTS.md``,
"The jit(vmap) peer's figure (issue 16)".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _parse(spec: str) -> tuple[str, int, int]:
    parts = spec.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected MODEL:POLICY_LEN:AGENTS")
    return parts[0], int(parts[1]), int(parts[2])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.vmap_check", description=__doc__)
    p.add_argument("cases", nargs="+", type=_parse, metavar="MODEL:POLICY_LEN:AGENTS")
    p.add_argument("--seconds", type=float, default=8.0, help="timing per case (default 8)")
    p.add_argument("--x64", action="store_true", help="float64 in the child (jax_enable_x64)")
    args = p.parse_args(argv)
    from perf.models import model_by_name
    from perf.pymdp_jax import ensure_venv, write_model

    python, reason = ensure_venv(install=False)
    if python is None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="agentloop-vmap-") as tmp:
        jobs = []
        for name, L, n in args.cases:
            m = model_by_name(name)
            path = Path(tmp) / f"{name}-L{L}.npz"
            policies = m.policies_for(L)
            write_model(path, list(m.A), list(m.B), list(m.C), list(m.D),
                        [list(x) for x in m.A_factor_list], list(m.control_fac_idx),
                        E=m.prior_over_policies(policies.shape[0]), policies=policies)
            jobs.append({"case": f"{name}:{L}:{n}", "model": str(path), "policy_len": L, "n": n})
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run([str(python), str(HERE / "vmap_check.py"), "--child",
                               json.dumps({"jobs": jobs, "seconds": args.seconds,
                                           "x64": args.x64})],
                              capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        print(f"error: the pymdp 1.x child failed: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"pymdp {out['pymdp']}, JAX {out['jax']}, x64 {out['x64']}, XLA_FLAGS "
          f"{out['xla_flags']!r}, CPUs {out['cpus']}")
    print(f"{'case':<28} {'bench peer':>12} {'closed over':>12} {'steps':>6}")
    for row in out["rows"]:
        print(f"{row['case']:<28} {row['bench']:>12,.0f} {row['closed']:>12,.0f} "
              f"{row['steps']:>6}")
    return 0


# ------------------------------------------------------------------------------------ child
def _closed(model_path: str, policy_len: int, n: int, params: dict[str, Any]) -> Any:
    """The whole step in one jit over vmap(obs, prior), the model closed over."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from pymdp import control, inference
    from pymdp_jax import _load_model  # type: ignore[import-not-found]

    data, meta, A, B, C, D = _load_model(model_path)
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    A, B, C, D = ([x.astype(dt) for x in xs] for xs in (A, B, C, D))
    policies = jnp.asarray(data["policies"], dtype=jnp.int32)
    E = jnp.asarray(data["E"], dtype=dt)
    deps = [list(x) for x in meta["A_factor_list"]]
    bdeps = [[f] for f in range(len(B))]
    num_controls = [int(b.shape[-1]) for b in B]

    def one(obs: list[Any], prior: list[Any]) -> tuple[Any, list[Any]]:
        qs = inference.update_posterior_states(
            A, B, obs, None, prior=prior, A_dependencies=deps, B_dependencies=bdeps,
            num_iter=params["num_iter"], method="fpi", distr_obs=False)
        qs = [q[-1] for q in qs]
        q_pi, _ = control.update_posterior_policies(
            policies, qs, A, B, C, E, None, None, deps, bdeps, gamma=params["gamma"])
        action = control.sample_action(policies, num_controls, q_pi,
                                       action_selection=params["action_selection"])
        return action, control.compute_expected_state(qs, B, action, bdeps)

    f = jax.jit(jax.vmap(one))
    prior = [jnp.tile(d, (n, 1)) for d in D]
    rng = np.random.default_rng(0)
    num_obs = [int(a.shape[0]) for a in A]

    def step() -> float:
        nonlocal prior
        obs = [jnp.asarray(rng.integers(0, o, size=n), dtype=jnp.int32) for o in num_obs]
        jax.block_until_ready(obs)
        t0 = time.perf_counter()
        action, prior = f(obs, prior)
        jax.block_until_ready((action, prior))
        return time.perf_counter() - t0
    return step


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata as md

    import jax

    if spec["x64"]:
        jax.config.update("jax_enable_x64", True)
    import numpy as np
    from pymdp_jax import _Vmapped, step_params  # type: ignore[import-not-found]

    params = step_params(None)
    rows = []
    for job in spec["jobs"]:
        L, n = int(job["policy_len"]), int(job["n"])
        bench = _Vmapped(job["model"], L, n, 0, params).step_once
        closed = _closed(job["model"], L, n, params)
        for _ in range(3):
            bench(), closed()
        tb: list[float] = []
        tc: list[float] = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < spec["seconds"] or len(tb) < 5:
            tb.append(bench())
            tc.append(closed())
        rows.append({"case": job["case"], "bench": n / float(np.median(tb)),
                     "closed": n / float(np.median(tc)), "steps": len(tb)})
    return {"pymdp": md.version("inferactively-pymdp"), "jax": jax.__version__,
            "x64": bool(jax.config.jax_enable_x64), "xla_flags": os.environ.get("XLA_FLAGS"),
            "cpus": len(os.sched_getaffinity(0)), "rows": rows}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
