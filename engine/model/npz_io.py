"""The ``.npz`` model file: the bytes a model is saved as, and reading them back (no pickles)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from engine.errors import ModelError

#: The ``format`` field of a model file's ``meta`` entry.
MODEL_FORMAT = "agentloop-model/1"

Model = TypeVar("Model")


def npz_bytes(meta: dict[str, Any], named_arrays: list[tuple[str, np.ndarray]]) -> bytes:
    """The ``.npz`` bytes of a model: its named arrays plus ``meta`` as JSON bytes."""
    arrays = dict(named_arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_npz(source: str | io.BytesIO, name: str, build: Callable[..., Model]) -> Model:
    """Read a model file and pass its arrays and fields to ``build`` (the model class) as
    keyword arguments; a malformed file raises :class:`ModelError` labelled ``name``."""
    try:
        with np.load(source, allow_pickle=False) as npz:
            files = {k: np.array(npz[k]) for k in npz.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile/npy errors come in many types
        raise ModelError(name, f"is not a readable agentloop .npz model ({exc})") from None
    if "meta" not in files:
        raise ModelError(name, "has no 'meta' entry: not an agentloop model file")
    try:
        meta = json.loads(files["meta"].tobytes().decode())
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or nested too deep
        raise ModelError(f"{name}:meta", f"is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{name}:meta", f"must be a JSON object, got "
                         f"{type(meta).__name__}")
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{name}:meta", f"unknown format {meta.get('format')!r}")

    def take(key: str) -> np.ndarray:
        if key not in files:
            raise ModelError(name, f"is missing the array {key!r}")
        return files[key]

    try:
        n_m, n_f = int(meta["num_modalities"]), int(meta["num_factors"])
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelError(f"{name}:meta", f"num_modalities and num_factors must be whole "
                         f"numbers ({exc})") from None
    except KeyError as exc:
        raise ModelError(f"{name}:meta", f"is missing the field {exc}") from None
    for key in ("A_factor_list", "control_fac_idx"):
        if key in meta and not isinstance(meta[key], list):
            raise ModelError(f"{name}:meta", f"{key} must be a list, got {meta[key]!r}")
    try:
        return build(
            A=[take(f"A_{m}") for m in range(n_m)],
            B=[take(f"B_{f}") for f in range(n_f)],
            C=[take(f"C_{m}") for m in range(n_m)],
            D=[take(f"D_{f}") for f in range(n_f)],
            E=take("E") if meta["has_E"] else None,
            pA=[take(f"pA_{m}") for m in range(n_m)] if meta["has_pA"] else None,
            pB=[take(f"pB_{f}") for f in range(n_f)] if meta["has_pB"] else None,
            A_factor_list=meta["A_factor_list"],
            control_fac_idx=meta["control_fac_idx"],
            policies=take("policies") if meta["has_policies"] else None,
        )
    except KeyError as exc:
        raise ModelError(f"{name}:meta", f"is missing the field {exc}") from None

