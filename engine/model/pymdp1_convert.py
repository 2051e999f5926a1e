"""Conversion to and from pymdp 1.x (JAX) ``Agent`` objects, read by duck typing so that
agentloop never imports JAX: a pymdp 1.x agent holds batched arrays (leading batch axis),
``A_dependencies`` / ``B_dependencies`` and a ``Policies`` object.

pymdp 1.x's ``C[m]`` is ``(O_m,)`` or ``(policy_len, O_m)``; agentloop's time-indexed C is
``(O_m, T)``, so a 2-D C is transposed both ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from engine.errors import ConfigError

#: pymdp 1.x inference methods other than fixed-point iteration, refused by name.
SEQUENCE_METHODS = ("ovf", "mmp", "vmp", "exact")


class Pymdp1Exportable(Protocol):
    """What :func:`pymdp1_agent_arguments` reads from a model (``GenerativeModel`` is one)."""

    A: tuple[np.ndarray, ...]
    B: tuple[np.ndarray, ...]
    C: tuple[np.ndarray, ...]
    D: tuple[np.ndarray, ...]
    A_factor_list: tuple[tuple[int, ...], ...]
    B_factor_list: tuple[tuple[int, ...], ...]
    control_fac_idx: tuple[int, ...]

    def policies_for(self, policy_len: int, control_fac_idx: Sequence[int] | None = None
                     ) -> np.ndarray: ...

    def prior_over_policies(self, n_policies: int) -> np.ndarray: ...


def is_pymdp1_agent(agent: Any) -> bool:
    """True for a pymdp 1.x ``Agent`` (it has ``A_dependencies`` and ``batch_size``)."""
    return hasattr(agent, "A_dependencies") and hasattr(agent, "batch_size")


def _first_of_batch(name: str, value: Any) -> np.ndarray:
    """``value[0]`` as float64, after checking that every batch element equals it."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        raise ConfigError(f"pymdp 1.x agent: {name} has no batch axis")
    if not np.array_equal(arr, np.broadcast_to(arr[:1], arr.shape)):
        raise ConfigError(f"pymdp 1.x agent: {name} differs between batch elements; a "
                          "population shares one model (convert one batch element at a time)")
    return np.array(arr[0])


def pymdp1_model_arguments(agent: Any) -> dict[str, Any]:
    """The ``GenerativeModel`` keyword arguments of a pymdp 1.x ``Agent``: batch element 0 of
    A, B, C, D, E (every element must be equal), the dependencies, controls and policies."""
    if getattr(agent, "action_maps", None) is not None:
        raise ConfigError("pymdp 1.x agent: B_action_dependencies (flattened joint actions) "
                          "are not supported; give each factor its own actions")
    A = [_first_of_batch(f"A[{m}]", a) for m, a in enumerate(agent.A)]
    B = [_first_of_batch(f"B[{f}]", b) for f, b in enumerate(agent.B)]
    C = [_first_of_batch(f"C[{m}]", c) for m, c in enumerate(agent.C)]
    C = [c.T.copy() if c.ndim == 2 else c for c in C]
    D = [_first_of_batch(f"D[{f}]", d) for f, d in enumerate(agent.D)]
    E = _first_of_batch("E", agent.E)
    policies = np.asarray(getattr(agent.policies, "policy_arr", agent.policies), dtype=np.int64)
    return dict(A=A, B=B, C=C, D=D, E=E,
                A_factor_list=[list(map(int, d)) for d in agent.A_dependencies],
                B_factor_list=[list(map(int, d)) for d in agent.B_dependencies],
                control_fac_idx=[int(f) for f in agent.control_fac_idx], policies=policies)


def pymdp1_config_fields(agent: Any) -> dict[str, Any]:
    """The ``InferenceConfig`` fields of a pymdp 1.x ``Agent`` (``semantics="pymdp1"``);
    ConfigError, naming the option, for what agentloop does not run."""
    algo = str(agent.inference_algo).lower()
    if algo in SEQUENCE_METHODS:
        raise ConfigError(f"pymdp 1.x agent: inference_algo={algo!r} is not supported; "
                          "agentloop runs 'fpi' (fixed-point iteration)")
    if algo != "fpi":
        raise ConfigError(f"pymdp 1.x agent: unknown inference_algo {algo!r}")
    refused = {"use_inductive": "inductive planning", "categorical_obs":
               "observations given as distributions", "use_param_info_gain":
               "the parameter information gain", "learn_A": "A learning", "learn_B":
               "B learning", "learn_C": "C learning", "learn_D": "D learning",
               "learn_E": "E learning"}
    for name, what in refused.items():
        if bool(getattr(agent, name, False)):
            raise ConfigError(f"pymdp 1.x agent: {name}=True ({what}) is not supported with "
                              "semantics='pymdp1'")
    if getattr(agent, "preprocess_fn", None) is not None:
        raise ConfigError("pymdp 1.x agent: preprocess_fn is not supported; give agentloop "
                          "integer observations")
    return dict(
        semantics="pymdp1",
        policy_len=int(agent.policy_len),
        gamma=float(_first_of_batch("gamma", agent.gamma)),
        alpha=float(_first_of_batch("alpha", agent.alpha)),
        action_selection=str(agent.action_selection),
        sampling_mode=str(agent.sampling_mode),
        use_utility=bool(agent.use_utility),
        use_states_info_gain=bool(agent.use_states_info_gain),
        num_iter=int(agent.num_iter),
    )


def pymdp1_agent_arguments(model: Pymdp1Exportable, config: Any) -> dict[str, Any]:
    """Keyword arguments of ``pymdp.agent.Agent`` (pymdp 1.x) for ``model`` and ``config``,
    as NumPy arrays with a batch axis of 1 (pass them through ``jnp.asarray``)."""
    policies = model.policies_for(config.policy_len, config.control_fac_idx)

    def batch(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)[None]

    return dict(
        A=[batch(a) for a in model.A], B=[batch(b) for b in model.B],
        C=[batch(c.T if c.ndim == 2 else c) for c in model.C], D=[batch(d) for d in model.D],
        E=batch(model.prior_over_policies(policies.shape[0])),
        A_dependencies=[list(d) for d in model.A_factor_list],
        B_dependencies=[list(d) for d in model.B_factor_list],
        control_fac_idx=list(config.control_fac_idx or model.control_fac_idx),
        policies=np.asarray(policies, dtype=np.int64), policy_len=config.policy_len,
        gamma=float(config.gamma), alpha=float(config.alpha), num_iter=int(config.num_iter),
        action_selection=config.action_selection, sampling_mode=config.sampling_mode,
        use_utility=config.use_utility, use_states_info_gain=config.use_states_info_gain,
        use_param_info_gain=False, inference_algo="fpi", batch_size=1,
    )


def pymdp1_agent(model: Pymdp1Exportable, config: Any) -> Any:
    """A pymdp 1.x ``Agent`` of ``model`` and ``config``; needs pymdp >= 1 and JAX installed
    (pymdp 1.x and 0.0.7.1 are both the ``pymdp`` package, so one environment holds one)."""
    try:
        import jax.numpy as jnp
        from pymdp.agent import Agent
    except ImportError as exc:
        raise ConfigError(f"to_pymdp1 needs pymdp 1.x and JAX installed ({exc})") from None
    if not hasattr(Agent, "infer_parameters"):
        raise ConfigError("to_pymdp1 needs pymdp 1.x; the installed pymdp is 0.0.7.x")
    args = pymdp1_agent_arguments(model, config)
    for key in ("A", "B", "C", "D"):
        args[key] = [jnp.asarray(a) for a in args[key]]
    args["E"] = jnp.asarray(args["E"])
    args["policies"] = jnp.asarray(args["policies"])
    return Agent(**args)
