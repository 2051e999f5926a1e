"""The fused Numba step: one agent's state inference, expected free energy, policy posterior and
action selection, compiled and run in parallel over agents.

``step`` is what the runtime calls; ``stages`` and ``expected_free_energy`` hold the compiled
twins of ``engine.kernels.reference``'s stages; ``scratch`` carves each thread's scratch rows.
"""
