"""The benchmark report, ``python -m perf`` (and ``agentloop bench``): agentloop against pymdp
0.0.7.1 and pymdp 1.x, measured side by side in one run (see docs/architecture.md)."""
