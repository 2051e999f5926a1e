"""The command-line front ends of ``agentloop run``, ``replay``, ``bench``, ``demo`` and
``shm``: each module's ``register(subparsers)`` adds its subcommand with a ``handler``; the
work itself is imported when the command runs, so building the command line stays fast."""
