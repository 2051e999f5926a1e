"""The ``.npz`` model file: the bytes a model is saved as, and reading them back (no pickles).

Reading checks every member's declared size (its npy header, read before its data) against
the others and against limits before any array is loaded (docs/limits.md).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import psutil

from engine.errors import ModelError
from engine.model.npz_shapes import check_declared_shapes

#: The ``format`` field of a model file's ``meta`` entry.
MODEL_FORMAT = "agentloop-model/1"
#: most bytes of ``meta`` (JSON)
MAX_META_BYTES = 1 << 20
#: most bytes of all of a model's arrays as float64 (what validation turns them into)
MAX_MODEL_BYTES = 4 << 30
#: models whose arrays take at most this many float64 bytes load from a file of any size;
#: larger ones may take at most ``MAX_INFLATION`` times the file's size
MODEL_FLOOR_BYTES = 64 << 20
MAX_INFLATION = 64
#: deflate cannot compress better than about 1032:1; a member declaring more lies
MAX_DEFLATE_RATIO = 1100

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
    keyword arguments; a malformed or oversized file raises :class:`ModelError` labelled
    ``name`` before its arrays are loaded."""
    try:
        size = os.path.getsize(source) if isinstance(source, str) else len(source.getbuffer())
        with zipfile.ZipFile(source) as archive:
            members = _members(archive, name)
            meta = _meta(archive, members, name)
            headers = {key: _header(archive, info, f"{name}:{key}")
                       for key, info in members.items() if key != "meta"}
            wanted = check_declared_shapes(meta, headers, name)
            _check_budget(headers, wanted, size, name)
            files = {key: _read(archive, members[key], f"{name}:{key}") for key in wanted}
    except (FileNotFoundError, ModelError):
        raise
    except Exception as exc:  # zipfile/npy errors come in many types
        raise ModelError(name, f"is not a readable agentloop .npz model ({exc})") from None
    n_m, n_f = int(meta["num_modalities"]), int(meta["num_factors"])

    def take(key: str) -> np.ndarray:
        return files[key]

    return build(
        A=[take(f"A_{m}") for m in range(n_m)],
        B=[take(f"B_{f}") for f in range(n_f)],
        C=[take(f"C_{m}") for m in range(n_m)],
        D=[take(f"D_{f}") for f in range(n_f)],
        E=take("E") if meta["has_E"] else None,
        pA=[take(f"pA_{m}") for m in range(n_m)] if meta["has_pA"] else None,
        pB=[take(f"pB_{f}") for f in range(n_f)] if meta["has_pB"] else None,
        A_factor_list=meta["A_factor_list"],
        B_factor_list=meta.get("B_factor_list"),
        control_fac_idx=meta["control_fac_idx"],
        policies=take("policies") if meta["has_policies"] else None,
    )


def _members(archive: zipfile.ZipFile, name: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's ``.npy`` members by key; a member that claims to inflate more than
    deflate can is refused."""
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        key = info.filename[:-4]
        if (info.compress_type != zipfile.ZIP_STORED
                and info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1)):
            raise ModelError(f"{name}:{key}", f"declares {info.file_size:,} bytes from "
                             f"{info.compress_size:,} compressed, more than compression "
                             f"can give: a damaged or hostile file")
        members[key] = info
    if "meta" not in members:
        raise ModelError(name, "has no 'meta' entry: not an agentloop model file")
    return members


def _meta(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
          name: str) -> dict[str, Any]:
    """The ``meta`` entry: a JSON object of the model format (at most ``MAX_META_BYTES``)."""
    info = members["meta"]
    if info.file_size > MAX_META_BYTES:
        raise ModelError(f"{name}:meta", f"is {info.file_size:,} bytes, more than "
                         f"{MAX_META_BYTES:,}")
    raw = _read(archive, info, f"{name}:meta")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or nested too deep
        raise ModelError(f"{name}:meta", f"is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{name}:meta", f"must be a JSON object, got "
                         f"{type(meta).__name__}")
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{name}:meta", f"unknown format {meta.get('format')!r}")
    return meta


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str
            ) -> tuple[tuple[int, ...], np.dtype]:
    """A member's declared shape and dtype, from its npy header alone; its data must fit in
    the member."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ModelError(name, f"npy format version {version} is not read")
        offset = fh.tell()
    if dtype.hasobject:
        raise ModelError(name, "holds Python objects (pickles are never loaded)")
    data = math.prod(shape) * dtype.itemsize
    if data > info.file_size - offset:
        raise ModelError(name, f"declares {data:,} bytes of {dtype} {shape}, its entry holds "
                         f"{max(info.file_size - offset, 0):,}")
    return tuple(int(s) for s in shape), dtype


def _check_budget(headers: dict[str, tuple[tuple[int, ...], np.dtype]], wanted: list[str],
                  size: int, name: str) -> None:
    """The arrays ``wanted``, as float64, fit the hard limit, the file's size (at most
    ``MAX_INFLATION`` times it past ``MODEL_FLOOR_BYTES``) and the memory available."""
    total = sum(math.prod(headers[k][0]) * max(8, headers[k][1].itemsize) for k in wanted)
    limit = min(MAX_MODEL_BYTES, max(MODEL_FLOOR_BYTES, MAX_INFLATION * size))
    if total > limit:
        raise ModelError(name, f"declares {total:,} bytes of arrays (as float64) in a "
                         f"{size:,}-byte file; at most {limit:,} are read from it")
    available = psutil.virtual_memory().available
    if 2 * total > available:
        raise ModelError(name, f"needs {2 * total:,} bytes to load (its arrays and their "
                         f"float64 copies), more than the {available:,} available")


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    with archive.open(info) as fh:
        arr = np.lib.format.read_array(fh, allow_pickle=False)
    if not isinstance(arr, np.ndarray):
        raise ModelError(name, "is not an array")
    return arr
