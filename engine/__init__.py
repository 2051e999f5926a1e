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
    ServeError,
    ShardNotRestored,
    ShmError,
    TickLogError,
    UsageError,
    WorkerError,
    WorldError,
)
from engine.factory import make_engine
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents
from engine.runtime.engine import Engine
from engine.runtime.engine_base import EngineBase
from engine.runtime.population import Population
from engine.runtime.tick import RunSummary, TickInfo
from engine.version import package_version

__version__ = package_version()

__all__ = [
    "AgentloopError",
    "Agents",
    "ClusterError",
    "ConfigError",
    "DeviceFault",
    "Engine",
    "EngineBase",
    "EngineStateError",
    "GenerativeModel",
    "InferenceConfig",
    "ModelError",
    "ObservationError",
    "PoolError",
    "Population",
    "RunSummary",
    "ReplayError",
    "ServeError",
    "ShardNotRestored",
    "ShmError",
    "TickInfo",
    "TickLogError",
    "UsageError",
    "WorkerError",
    "WorldError",
    "__version__",
    "make_engine",
]
