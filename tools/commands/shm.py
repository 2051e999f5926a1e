"""``agentloop shm list|clean``: list or remove shared memory left by crashed runs."""

from __future__ import annotations

import argparse

EXIT_OK = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``shm`` subcommand to ``subparsers``, with :func:`main` as its handler."""
    shm = subparsers.add_parser(
        "shm", help="list or remove shared memory left by crashed runs",
        description="agentloop names every segment and semaphore "
                    "agentloop-<owner pid>x<id>-<name> in /dev/shm.")
    shm.add_argument("action", choices=("list", "clean"),
                     help="list: show agentloop runs in /dev/shm and whether their owner lives; "
                          "clean: remove those whose owner process is dead")
    shm.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """List this machine's agentloop runs in /dev/shm, or remove those whose owner is dead."""
    from engine.runtime.shm import leftover_entries, run_is_alive, sweep_stale

    if args.action == "clean":
        removed = sweep_stale()
        print(f"removed {len(removed)} stale shared-memory entries"
              + (": " + ", ".join(removed) if removed else ""))
        return EXIT_OK
    runs = leftover_entries()
    if not runs:
        print("no agentloop shared memory in /dev/shm")
    for run_id, entries in sorted(runs.items()):
        state = "live" if run_is_alive(run_id) else "stale (owner dead)"
        print(f"run {run_id}: {len(entries)} entries, {state}")
    return EXIT_OK
