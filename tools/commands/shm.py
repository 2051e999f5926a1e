"""``agentloop shm list|clean``: list or remove shared memory left by crashed runs."""

from __future__ import annotations

import argparse
import sys
import warnings

EXIT_OK = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``shm`` subcommand to ``subparsers``, with :func:`main` as its handler."""
    shm = subparsers.add_parser(
        "shm", help="list or remove shared memory left by crashed runs",
        description="agentloop names every segment and semaphore "
                    "agentloop-<owner pid>x<id>-<name> in /dev/shm; a run is live while its "
                    "owner holds the lock on its manifest.")
    shm.add_argument("action", choices=("list", "clean"),
                     help="list: show agentloop runs in /dev/shm and whether their owner lives; "
                          "clean: remove those whose owner process is dead")
    shm.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """List this machine's agentloop runs in /dev/shm, or remove those whose owner is dead."""
    from engine.runtime.shm import FOREIGN, STALE, leftover_entries, owner_uid, run_state

    if args.action == "clean":
        from engine.runtime.shm import sweep_stale

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            removed = sweep_stale()
        for warning in caught:
            print(f"agentloop shm clean: {warning.message}", file=sys.stderr)
        print(f"removed {len(removed)} stale shared-memory entries"
              + (": " + ", ".join(removed) if removed else ""))
        return EXIT_OK
    runs = leftover_entries()
    if not runs:
        print("no agentloop shared memory in /dev/shm")
    for run_id, entries in sorted(runs.items()):
        state = run_state(run_id)
        label = {STALE: "stale (owner dead)",
                 FOREIGN: f"another user's (uid {owner_uid(entries)}), left alone"}.get(state,
                                                                                       state)
        print(f"run {run_id}: {len(entries)} entries, {label}")
    return EXIT_OK
