"""Errors raised by agentloop: each names what was wrong and where."""

from __future__ import annotations


class AgentloopError(Exception):
    """Base class of every error agentloop raises on purpose."""


class ModelError(AgentloopError, ValueError):
    """A generative model (or one of its arrays) is malformed.

    ``array`` names the array (``"A[1]"``, ``"B[0]"``, ``"D"``, ...), ``index`` the offending
    position when there is one, and ``problem`` says what is wrong with it.
    """

    def __init__(self, array: str, problem: str, index: object = None) -> None:
        self.array = array
        self.problem = problem
        self.index = index
        where = array if index is None else f"{array} at index {index}"
        super().__init__(f"{where}: {problem}")


class ObservationError(AgentloopError, ValueError):
    """Observations handed to ``step`` are malformed; no agent's state was changed."""


class ConfigError(AgentloopError, ValueError):
    """An ``InferenceConfig`` value is out of range or inconsistent with the model."""


class EngineStateError(AgentloopError, RuntimeError):
    """A call the engine's current state does not allow (stepping before ``start``), or that
    needs a population named on an engine of several."""


class WorkerError(AgentloopError, RuntimeError):
    """A worker process could not be started or did not get ready in time."""


class PoolError(AgentloopError, RuntimeError):
    """A worker's preallocated scratch pool cannot lend the buffer asked for."""


class ShmError(AgentloopError, OSError):
    """Shared memory could not be created, sized or attached; says which segment and why."""


class DeviceFault(AgentloopError):
    """The device failed while stepping a population (also what a test injects)."""


class TickLogError(AgentloopError, ValueError):
    """A tick log cannot be written or read: the message names the path or byte offset and
    what was expected there."""


class ReplayError(AgentloopError):
    """A tick log cannot be replayed from where it was asked to (for example a device that
    failed over before the requested starting point)."""


class ClusterError(AgentloopError, RuntimeError):
    """The Ray cluster could not place the shards, or a shard is dead or did not answer."""


class ShardNotRestored(AgentloopError):
    """A restarted shard actor was asked to step before the coordinator restored it."""


class WorldError(AgentloopError, ValueError):
    """A world's parameters, layout or the actions handed to it are malformed; the message
    names the parameter, agent or factor."""


class UsageError(AgentloopError, ValueError):
    """A command-line or tool argument is malformed; the message is one line for the user."""


class ServeError(AgentloopError, RuntimeError):
    """``agentloop serve`` and its clients: the region is missing or of another ABI, the peer
    died or closed, a wait timed out, or the server refused a tick; one line naming the server
    and what happened."""
