"""Inspect and compare tick logs: ``agentloop inspect LOG`` and ``agentloop diff A B``.

:mod:`~tools.inspect.scan` streams a log once, :mod:`~tools.inspect.summary` reduces it to a
JSON-ready dict, :mod:`~tools.inspect.text` prints it, :mod:`~tools.inspect.plot` draws it,
:mod:`~tools.inspect.diff` names the first difference of two logs and
:mod:`~tools.inspect.command` is the command line.
"""
