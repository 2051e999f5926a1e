"""The engine's diagnostics go through ``logging`` (``agentloop.*`` loggers); the library adds
no handler, and the CLI shows them on stderr as its own one-line warnings."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

import tools.commands.shm as shm_command
from engine.runtime.degrade import DegradeController
from engine.runtime.engine import Engine
from tools import cli
from world.models import grid_model

ENGINE = Path(__file__).resolve().parents[3] / "engine"


def test_a_respawned_worker_is_a_warning_on_the_agentloop_logger(
        caplog: pytest.LogCaptureFixture) -> None:
    obs = np.zeros((40, 2), dtype=np.int64)
    with Engine(grid_model(3), 40, workers=1) as engine:
        engine.step(obs, budget_s=1.0)
        pid = engine.worker_pids[0]
        os.kill(pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="agentloop"):
            for _ in range(2):
                engine.step(obs, budget_s=0.2)
        assert engine.respawns == 1
    records = [r for r in caplog.records if r.name == "agentloop.workers"]
    assert [r.levelno for r in records] == [logging.WARNING], caplog.text
    assert re.search(rf"worker 0 \(pid {pid}\) died \(exit code -9\); respawned on the same "
                     rf"agents \(respawn 1\)", records[0].getMessage()), records[0].getMessage()


def test_a_level_change_is_an_info_record(caplog: pytest.LogCaptureFixture) -> None:
    controller = DegradeController(patience=1)
    with caplog.at_level(logging.INFO, logger="agentloop"):
        for _ in range(3):
            controller.observe_tick(wall_s=0.2, budget_s=0.1, updated=100, n_agents=100)
    assert controller.level > 0
    records = [r for r in caplog.records if r.name == "agentloop.degrade"]
    assert records and all(r.levelno == logging.INFO for r in records)
    assert "degradation level 0 (full) -> 1 (fewer iterations)" in records[0].getMessage()


def test_the_library_configures_no_logging() -> None:
    """Handlers are the application's: nothing in engine/ adds one or sets up the root
    logger, and nothing there prints to stderr."""
    banned = re.compile(r"basicConfig|addHandler|sys\.stderr|(?<![\w.])print\(")
    found = [f"{path.relative_to(ENGINE)}: {match.group()}" for path in ENGINE.rglob("*.py")
             for match in banned.finditer(path.read_text())]
    assert found == []
    assert logging.getLogger("agentloop").handlers == []


def _logs_two(args: argparse.Namespace) -> int:
    logging.getLogger("agentloop.workers").warning("worker 0 died;\n respawned")
    logging.getLogger("agentloop.degrade").info("degradation level 0 -> 1")
    return 0


@pytest.mark.parametrize(("level", "shown"), [
    ([], ["agentloop shm: warning: worker 0 died; respawned"]),
    (["--log-level", "info"], ["agentloop shm: warning: worker 0 died; respawned",
                               "agentloop shm: info: degradation level 0 -> 1"]),
    (["--log-level", "error"], []),
])
def test_the_cli_shows_diagnostics_from_its_log_level(
        level: list[str], shown: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shm_command, "main", _logs_two)
    logger = logging.getLogger("agentloop")
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert cli.main([*level, "shm", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == shown
    assert captured.out == ""
    assert (list(logger.handlers), logger.level, logger.propagate) == before
