"""``agentloop replay LOG`` on the command line (the replay itself is :mod:`tools.replay`)."""

from __future__ import annotations

import argparse

from tools.args import non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` subcommand to ``subparsers``, with :func:`main` as its handler."""
    replay = subparsers.add_parser(
        "replay", help="re-run a tick log and verify every recorded action",
        description="Rebuild the engine from a tick log's header, feed the recorded "
                    "observations with the recorded degradation levels and stale agents, "
                    "and check that every action matches. On the first difference, print "
                    "the desync report (tick, agent, expected and actual action, the beliefs "
                    "that led there) and exit 1.",
        epilog="exit codes: 0 every action matched; 1 replay diverged; 2 unreadable log or "
               "bad command line")
    replay.add_argument("log", metavar="LOG",
                        help="the tick log (agentloop run --log); for a set rotated by "
                             "--log-max-bytes, its first file (run.mcap, even when rotated "
                             "away) or a later one to start there")
    replay.add_argument("--from", dest="from_tick", type=non_negative_int, default=None,
                        metavar="TICK", help="start at the last belief snapshot before TICK")
    replay.add_argument("--threads", type=positive_int, default=None,
                        help="Numba threads; default all cores")
    replay.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run ``agentloop replay`` (:func:`tools.replay.main_replay`)."""
    from tools.replay import main_replay

    return main_replay(args)
