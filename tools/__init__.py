"""The ``agentloop`` command line."""
