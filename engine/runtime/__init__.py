"""The runtime: shared memory, workers, the tick loop, degradation."""
