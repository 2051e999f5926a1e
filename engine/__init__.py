"""agentloop's engine: generative models, inference kernels and the runtime that steps agents."""

from engine.errors import (
    AgentloopError,
    ClusterError,
    ConfigError,
    DeviceFault,
    EngineStateError,
    ModelError,
    ObservationError,
    PoolError,
    ReplayError,
    ShardNotRestored,
    ShmError,
    TickLogError,
    UsageError,
    WorkerError,
    WorldError,
)
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents
from engine.runtime.engine import Engine, TickInfo
from engine.runtime.population import Population

__version__ = "0.1.0"

__all__ = [
    "AgentloopError",
    "Agents",
    "ClusterError",
    "ConfigError",
    "DeviceFault",
    "Engine",
    "EngineStateError",
    "GenerativeModel",
    "InferenceConfig",
    "ModelError",
    "ObservationError",
    "PoolError",
    "Population",
    "ReplayError",
    "ShardNotRestored",
    "ShmError",
    "TickInfo",
    "TickLogError",
    "UsageError",
    "WorkerError",
    "WorldError",
    "__version__",
]
