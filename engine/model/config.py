"""InferenceConfig: how agents infer and act, with pymdp 0.0.7.1's parameter names and defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from engine.errors import ConfigError
from engine.model.pymdp1_convert import is_pymdp1_agent, pymdp1_config_fields

ActionSelection = Literal["deterministic", "stochastic"]
SamplingMode = Literal["marginal", "full"]
Dtype = Literal["float32", "float64"]
Semantics = Literal["pymdp0", "pymdp1"]

#: The defaults each pymdp generation chose for the fields left unset (``None``).
GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "pymdp0": {"gamma": 16.0, "alpha": 16.0, "num_iter": 10, "sampling_mode": "marginal"},
    "pymdp1": {"gamma": 1.0, "alpha": 1.0, "num_iter": 16, "sampling_mode": "full"},
}


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """Inference parameters shared by every agent of a population.

    Names are those of ``pymdp.agent.Agent``. ``semantics`` picks the pymdp generation whose
    numbers the agents reproduce (``docs/pymdp1.md``):

    - ``"pymdp0"`` (default): pymdp 0.0.7.1 (see ``PYMDP_NOTES.md``): the state information
      gain over the joint outcome of all modalities, preferences ``ln softmax(C)``, fixed-point
      iteration that stops when the free energy settles.
    - ``"pymdp1"``: pymdp 1.x: the information gain summed per modality (its cost grows with
      the sum of the outcome counts, not their product), preferences ``C`` as given, exactly
      ``num_iter`` fixed-point sweeps, and no e^-16 cut of predicted states.

    ``gamma``, ``alpha``, ``num_iter`` and ``sampling_mode`` left unset take the chosen
    generation's defaults (0.0.7.1: 16, 16, 10, "marginal"; 1.x: 1, 1, 16, "full").
    :meth:`pymdp_v1_defaults` gives 1.x's defaults with 0.0.7.1's mathematics.

    Attributes:
        policy_len: planning horizon; policies are all action sequences of this length.
        gamma: policy precision in ``q(pi) = softmax(gamma * G + ln E)``.
        alpha: action precision, used by stochastic action selection.
        action_selection: ``"deterministic"`` (argmax, ties to the lowest index) or
            ``"stochastic"`` (sampled from a counter-based stream keyed by seed, agent, tick).
        sampling_mode: ``"marginal"`` (marginal over first actions) or ``"full"`` (best policy).
        use_utility, use_states_info_gain, use_param_info_gain: terms of the expected free energy.
        inference_algo: only ``"VANILLA"`` fixed-point iteration is supported.
        num_iter, dF, dF_tol: VANILLA iteration count, initial free-energy change and tolerance.
        learn_A, learn_B: Dirichlet learning of pA / pB (each agent then owns its A / B).
        lr_pA, lr_pB: learning rates.
        learn_before_policies: where learning sits in the step. True (default): after state
            inference, before G, like calling pymdp's ``infer_states``, ``update_A`` /
            ``update_B``, ``infer_policies``, ``sample_action``. False: after the action,
            like pymdp's T-maze learning demo (``infer_states``, ``infer_policies``,
            ``sample_action``, ``update_A``): G uses the parameters before this step's update.
        modalities_to_learn, factors_to_learn: ``"all"`` or a list of indices.
        control_fac_idx: overrides the model's controllable factors when given.
        dtype: ``"float32"`` (production default) or ``"float64"`` (bit-for-bit-ish with pymdp).
        semantics: ``"pymdp0"`` or ``"pymdp1"``, as above.
    """

    policy_len: int = 1
    gamma: float = None  # type: ignore[assignment]  # None: the generation's default
    alpha: float = None  # type: ignore[assignment]
    action_selection: ActionSelection = "deterministic"
    sampling_mode: SamplingMode = None  # type: ignore[assignment]
    use_utility: bool = True
    use_states_info_gain: bool = True
    use_param_info_gain: bool = False
    inference_algo: str = "VANILLA"
    num_iter: int = None  # type: ignore[assignment]
    dF: float = 1.0
    dF_tol: float = 0.001
    learn_A: bool = False
    learn_B: bool = False
    lr_pA: float = 1.0
    lr_pB: float = 1.0
    learn_before_policies: bool = True
    modalities_to_learn: str | tuple[int, ...] = "all"
    factors_to_learn: str | tuple[int, ...] = "all"
    control_fac_idx: tuple[int, ...] | None = None
    dtype: Dtype = "float32"
    semantics: Semantics = "pymdp0"

    def __post_init__(self) -> None:
        def fail(name: str, problem: str) -> None:
            raise ConfigError(f"InferenceConfig.{name}: {problem}")

        if self.semantics not in GENERATION_DEFAULTS:
            fail("semantics", f"must be 'pymdp0' (pymdp 0.0.7.1) or 'pymdp1' (pymdp 1.x), "
                 f"got {self.semantics!r}")
        for name, value in GENERATION_DEFAULTS[self.semantics].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

        if not isinstance(self.policy_len, int) or isinstance(self.policy_len, bool):
            fail("policy_len", f"must be an int, got {type(self.policy_len).__name__}")
        if self.policy_len < 1:
            fail("policy_len", f"must be >= 1, got {self.policy_len}")
        for name in ("gamma", "alpha", "dF", "dF_tol", "lr_pA", "lr_pB"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                fail(name, f"must be a number, got {type(value).__name__}")
            if not value == value or value in (float("inf"), float("-inf")):
                fail(name, f"must be finite, got {value}")
            if value < 0:
                fail(name, f"must be >= 0, got {value}")
        if self.action_selection not in ("deterministic", "stochastic"):
            fail("action_selection", f"must be 'deterministic' or 'stochastic', "
                 f"got {self.action_selection!r}")
        if self.sampling_mode not in ("marginal", "full"):
            fail("sampling_mode", f"must be 'marginal' or 'full', got {self.sampling_mode!r}")
        if self.inference_algo != "VANILLA":
            fail("inference_algo", f"only 'VANILLA' is supported, got {self.inference_algo!r}")
        if not isinstance(self.num_iter, int) or self.num_iter < 1:
            fail("num_iter", f"must be an int >= 1, got {self.num_iter!r}")
        if self.dtype not in ("float32", "float64"):
            fail("dtype", f"must be 'float32' or 'float64', got {self.dtype!r}")
        for name in ("modalities_to_learn", "factors_to_learn"):
            value = getattr(self, name)
            if isinstance(value, str):
                if value != "all":
                    fail(name, f"must be 'all' or a sequence of indices, got {value!r}")
            else:
                object.__setattr__(self, name, _int_tuple(name, value))
        if self.control_fac_idx is not None:
            object.__setattr__(
                self, "control_fac_idx", _int_tuple("control_fac_idx", self.control_fac_idx)
            )
        if self.semantics == "pymdp1":
            for name in ("learn_A", "learn_B", "use_param_info_gain"):
                if getattr(self, name):
                    fail(name, "is not supported with semantics='pymdp1' yet (pymdp 1.x's "
                         "learning and parameter information gain are not built); use "
                         "semantics='pymdp0'")

    @classmethod
    def pymdp1(cls, **fields: Any) -> InferenceConfig:
        """pymdp 1.x's mathematics and defaults: ``InferenceConfig(semantics="pymdp1", ...)``."""
        return cls(semantics="pymdp1", **fields)

    @classmethod
    def pymdp_v1_defaults(cls, **overrides: Any) -> InferenceConfig:
        """The defaults pymdp 1.x chose (gamma=1, alpha=1, num_iter=16, sampling_mode='full'),
        with pymdp 0.0.7.1's mathematics; :meth:`pymdp1` gives 1.x's mathematics too."""
        values: dict[str, Any] = {"gamma": 1.0, "alpha": 1.0, "num_iter": 16,
                                  "sampling_mode": "full"}
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> InferenceConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for tick-log headers and ``.npz`` metadata)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InferenceConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"InferenceConfig: unknown fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def from_pymdp(cls, agent: Any, dtype: Dtype = "float64", *, learn_A: bool = False,
                   learn_B: bool = False) -> InferenceConfig:
        """The configuration of a pymdp ``Agent``: 0.0.7.1's, or 1.x's (``semantics="pymdp1"``,
        whose options agentloop does not run raise a ConfigError naming them).

        Learning is off unless asked for: a pymdp ``Agent`` learns only when its caller calls
        ``update_A`` / ``update_B``, which the agent cannot tell, so holding ``pA`` / ``pB``
        (for example only for ``use_param_info_gain``, which is kept) does not turn it on.
        ``learn_A`` / ``learn_B`` turn it on and need the agent's ``pA`` / ``pB``.
        """
        if is_pymdp1_agent(agent):
            if learn_A or learn_B:
                raise ConfigError("InferenceConfig.from_pymdp: learning is not supported with "
                                  "semantics='pymdp1'")
            return cls(dtype=dtype, **pymdp1_config_fields(agent))
        if getattr(agent, "pD", None) is not None:
            raise ConfigError("InferenceConfig.from_pymdp: the pymdp agent holds pD (D "
                              "learning), which agentloop does not run; set agent.pD = None "
                              "to convert it without D learning")
        for name, wanted, counts in (("learn_A", learn_A, agent.pA),
                                     ("learn_B", learn_B, agent.pB)):
            if wanted and counts is None:
                raise ConfigError(f"InferenceConfig.from_pymdp: {name}=True needs a pymdp "
                                  f"agent with p{name[-1]}, and this one has none")
        params = agent.inference_params or {}
        learn_modalities = agent.modalities_to_learn
        learn_factors = agent.factors_to_learn
        return cls(
            policy_len=int(agent.policy_len),
            gamma=float(agent.gamma),
            alpha=float(agent.alpha),
            action_selection=agent.action_selection,
            sampling_mode=agent.sampling_mode,
            use_utility=bool(agent.use_utility),
            use_states_info_gain=bool(agent.use_states_info_gain),
            use_param_info_gain=bool(agent.use_param_info_gain),
            inference_algo=agent.inference_algo,
            num_iter=int(params.get("num_iter", 10)),
            dF=float(params.get("dF", 1.0)),
            dF_tol=float(params.get("dF_tol", 0.001)),
            learn_A=bool(learn_A),
            learn_B=bool(learn_B),
            lr_pA=float(agent.lr_pA),
            lr_pB=float(agent.lr_pB),
            modalities_to_learn=learn_modalities,
            factors_to_learn=learn_factors,
            control_fac_idx=tuple(int(f) for f in agent.control_fac_idx),
            dtype=dtype,
        )


def _int_tuple(name: str, values: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"InferenceConfig.{name}: must be a sequence of ints, "
                          f"got {values!r}") from None
    if any(v < 0 for v in out):
        raise ConfigError(f"InferenceConfig.{name}: indices must be >= 0, got {list(out)}")
    return out
