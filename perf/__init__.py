"""agentloop's benchmarks: ``python -m perf.<name>``; see ``/work/shared/BENCHMARKS.md``."""
