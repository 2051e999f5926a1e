"""``agentloop bench``: the benchmark of :mod:`perf.bench`, registered here and imported only
when the command line is built or the command runs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add :mod:`perf.bench`'s ``bench`` subcommand to ``subparsers``, with :func:`main` as its
    handler."""
    from perf.bench import cli

    cli.add_parsers(subparsers)
    subparsers.choices["bench"].set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run ``agentloop bench`` (:func:`perf.bench.cli.main_bench`)."""
    from perf.bench import cli

    return cli.main_bench(args)
