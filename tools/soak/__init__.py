"""``agentloop soak``: a headless long run that watches memory, file descriptors and /dev/shm.

:mod:`~tools.soak.options` says what runs and the bounds, :mod:`~tools.soak.run` drives it,
:mod:`~tools.soak.sampling` takes the :mod:`~tools.soak.samples`, :mod:`~tools.soak.checks`
gives the verdict, :mod:`~tools.soak.report` prints it and :mod:`~tools.soak.command` is the
command line.
"""
