"""``agentloop``: the command line. Bad input gets a one-line error and exit code 2.

Every subcommand's module registers its parser and handler (``register(subparsers)``); this
module builds the top-level parser from them and runs the chosen handler.

Exit codes: 0 done; 1 the run failed (the error is printed on one line); 2 bad command line;
130 interrupted by SIGINT (Ctrl-C), 143 stopped by SIGTERM (after the current tick).

The engine's diagnostics (``agentloop.*`` loggers) go to stderr as ``agentloop CMD: level:
message`` lines, from ``--log-level`` (default warning) up.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from engine.version import package_version
from tools.args import EXIT_CODES, OneLineParser
from tools.commands import bench, demo, inspect_model, replay, run, serve, shm
from tools.inspect import command as inspect_command
from tools.soak import command as soak_command

LOG_LEVELS = ("debug", "info", "warning", "error")
SUBCOMMANDS = (run, serve, replay, inspect_command, inspect_model, soak_command, bench, demo,
               shm)
"""The modules whose ``register`` adds the subcommands, in the order ``--help`` lists them."""


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="agentloop",
        description="Run many Active Inference agents (pymdp's mathematics, compiled).",
        epilog=EXIT_CODES)
    parser.add_argument("--version", action="version",
                        version=f"agentloop {package_version()}")
    parser.add_argument("--log-level", default="warning", choices=LOG_LEVELS,
                        help="the least severe of the engine's diagnostics (worker respawns, "
                             "device failovers, lost cluster shards, degradation level "
                             "changes at info) shown on stderr; default warning")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


class _DiagnosticFormatter(logging.Formatter):
    """``agentloop CMD: level: message``, the CLI's own warning lines' form, on one line."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(super().format(record).split())
        return f"agentloop {self.command}: {record.levelname.lower()}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for name, value in vars(args).items():
        if isinstance(value, list):  # argparse (Python < 3.12) reads `--opt=--` as [], untyped
            parser.error(f"argument {name}: expected one value, got none")
    logger = logging.getLogger("agentloop")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_DiagnosticFormatter(args.command))
    level, previous = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(args.log_level.upper())
    logger.propagate = False
    try:
        return args.handler(args)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = previous
