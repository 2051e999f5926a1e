"""The kernel benchmark, ``python -m perf.kernels``: step latency, throughput, the share of
the machine's FLOP and bandwidth limits, and memory per agent (see docs/architecture.md)."""
