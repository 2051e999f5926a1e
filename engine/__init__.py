"""agentloop's engine: generative models, inference kernels and the runtime that steps agents."""

from .agents import Agents
from .config import InferenceConfig
from .errors import AgentloopError, ConfigError, ModelError, ObservationError
from .loop import Engine, TickInfo
from .model import GenerativeModel
from .population import Population

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
