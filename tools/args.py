"""Argument types and checks shared by the ``agentloop`` subcommands (one-line errors)."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any


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


def non_negative_float(text: str) -> float:
    return number(text, float, 0.0, False)


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
