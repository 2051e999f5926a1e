"""The ``agentloop`` parser class, argument types and checks shared by the subcommands
(one-line errors, exit code 2)."""

from __future__ import annotations

import argparse
import math
import os
import re
from typing import Any, NoReturn

EXIT_USAGE = 2
MAX_SEED = 2**63 - 1
"""``engine.model.limits.MAX_SEED`` (not imported: the parsers import no engine)."""
EXIT_CODES = ("exit codes: 0 done; 1 the run failed (or its tick log was removed or replaced "
              "while written); 2 bad command line; "
              "130 interrupted (SIGINT); 143 stopped (SIGTERM)")
"""The exit codes of ``agentloop`` and ``agentloop run`` (their ``--help`` epilog)."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # one line, even if an argument holds newlines
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(text: str, kind: type, low: float, low_open: bool) -> Any:
    """``text`` as ``kind`` (int or float), finite and at least (or above) ``low``."""
    try:
        value = kind(text)
    except ValueError:
        word = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    if value < low or (low_open and value == low):
        above = "above" if low_open else "at least"
        raise argparse.ArgumentTypeError(f"must be {above} {low:g}, got {text}")
    return value


def positive_int(text: str) -> int:
    return number(text, int, 1, False)


def non_negative_int(text: str) -> int:
    return number(text, int, 0, False)


def positive_float(text: str) -> float:
    return number(text, float, 0.0, True)


def seed(text: str) -> int:
    """A random seed: a whole number in ``0..2**63 - 1`` (what the kernels take)."""
    value = number(text, int, 0, False)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1, got {text}")
    return value


def port(text: str) -> int:
    """A TCP port to listen on: 0 (any free port) to 65535."""
    value = number(text, int, 0, False)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {text}")
    return value


def non_negative_float(text: str) -> float:
    return number(text, float, 0.0, False)


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MAX_BYTE_SIZE = 1 << 60


def byte_size(text: str) -> int:
    """A size in bytes, at least 1: a whole number, or a number with a suffix K, M, G or T
    (powers of 1024; ``500M``, ``2G``, ``1.5g``, ``64KiB``, ``10MB`` also read as powers of
    1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or (match.group(3) and not match.group(2) and match.group(3).lower()
                         != "b"):
        raise argparse.ArgumentTypeError(f"expected a size in bytes such as 500M or 2G (K, M, "
                                         f"G, T: powers of 1024), got {text!r}")
    number, unit = match.group(1), _UNITS[match.group(2).lower()]
    value = int(number) * unit if number.isdigit() else math.floor(float(number) * unit)
    if not 1 <= value <= MAX_BYTE_SIZE:
        raise argparse.ArgumentTypeError(f"must be from 1 byte to {MAX_BYTE_SIZE:,}, got "
                                         f"{text}")
    return value


def unwritable(path: str) -> str | None:
    """Why a new file cannot be written at ``path`` (None when it can)."""
    if os.path.isdir(path):
        return "is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"the directory {parent} does not exist"
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "permission denied"
    return None
