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
