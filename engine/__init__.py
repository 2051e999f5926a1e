"""agentloop's engine: generative models, inference kernels and the runtime that steps agents."""

from engine.errors import AgentloopError, ConfigError, ModelError, ObservationError
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents
from engine.runtime.engine import Engine, TickInfo
from engine.runtime.population import Population

__version__ = "0.1.0"

__all__ = [
    "Agents",
    "AgentloopError",
    "ConfigError",
    "Engine",
    "GenerativeModel",
    "InferenceConfig",
    "ModelError",
    "ObservationError",
    "Population",
    "TickInfo",
    "__version__",
]
