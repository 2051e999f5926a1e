"""``agentloop``: the command line. Bad input gets a one-line error and exit code 2.

Every subcommand's module registers its parser and handler (``register(subparsers)``); this
module builds the top-level parser from them and runs the chosen handler.

Exit codes: 0 done; 1 the run failed (the error is printed on one line); 2 bad command line;
130 interrupted by SIGINT (Ctrl-C), 143 stopped by SIGTERM (after the current tick).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from engine.version import package_version
from tools.args import EXIT_CODES, OneLineParser
from tools.commands import bench, demo, inspect_model, replay, run, serve, shm
from tools.inspect import command as inspect_command
from tools.soak import command as soak_command

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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for name, value in vars(args).items():
        if isinstance(value, list):  # argparse (Python < 3.12) reads `--opt=--` as [], untyped
            parser.error(f"argument {name}: expected one value, got none")
    return args.handler(args)
