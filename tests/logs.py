"""``expect_log``: ``pytest.warns`` for the engine's loggers (diagnostics go through
``logging``), usable in helpers that have no ``caplog``."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator


class _Records(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def expect_log(logger: str, match: str,
               level: int = logging.WARNING) -> Iterator[list[logging.LogRecord]]:
    """The block must log, on ``logger`` or a child of it, a record at ``level`` or above
    whose message matches ``match`` (``re.search``); yields the records it logged there."""
    target = logging.getLogger(logger)
    handler = _Records(level)
    old_level = target.level
    target.addHandler(handler)
    if target.getEffectiveLevel() > level:
        target.setLevel(level)
    try:
        yield handler.records
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)
    messages = [record.getMessage() for record in handler.records]
    assert any(re.search(match, message) for message in messages), (
        f"no {logging.getLevelName(level)} record on {logger!r} matching {match!r}; got "
        f"{messages}")
