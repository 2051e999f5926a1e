"""The tick log's optional visual topics: a grid world's cells as Foxglove's ``foxglove.Grid``
(``/world/grid``) and the world's own figures as plain JSON numbers (``/world/stats``).

The message layout and why: docs/ticklog.md ("Visual topics").
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

TOPIC_GRID = "/world/grid"
TOPIC_WORLD_STATS = "/world/stats"
GRID_SCHEMA_NAME = "foxglove.Grid"
FRAME_ID = "world"
"""The grid's frame of reference (Foxglove's 3D panel shows it with display frame "world")."""

# Foxglove's NumericType values (foxglove.PackedElementField.type)
UINT8, UINT32, FLOAT32 = 1, 5, 7
_FIELD_TYPES = {UINT8: np.dtype("<u1"), UINT32: np.dtype("<u4"), FLOAT32: np.dtype("<f4")}


def _number(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def _count(description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "description": description}


_NUMERIC_TYPES = ("UNKNOWN", "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                  "FLOAT64")

GRID_SCHEMA: dict[str, Any] = {
    "title": GRID_SCHEMA_NAME,
    "description": "A 2D grid of data",
    "type": "object",
    "properties": {
        "timestamp": {"type": "object", "title": "time", "description": "Timestamp of grid",
                      "properties": {"sec": {"type": "integer", "minimum": 0},
                                     "nsec": {"type": "integer", "minimum": 0,
                                              "maximum": 999_999_999}}},
        "frame_id": {"type": "string", "description": "Frame of reference"},
        "pose": {"title": "foxglove.Pose", "type": "object",
                 "description": "Origin of the grid's corner in the frame; the grid lies in its "
                                "x-y plane",
                 "properties": {
                     "position": {"title": "foxglove.Vector3", "type": "object",
                                  "description": "Position in 3D space",
                                  "properties": {k: _number(f"{k} coordinate") for k in "xyz"}},
                     "orientation": {"title": "foxglove.Quaternion", "type": "object",
                                     "description": "Orientation in 3D space",
                                     "properties": {k: _number(f"{k} value") for k in "xyzw"}}}},
        "column_count": _count("Number of grid columns"),
        "cell_size": {"title": "foxglove.Vector2", "type": "object",
                      "description": "Size of one cell along x and y, relative to pose",
                      "properties": {k: _number(f"{k} length") for k in "xy"}},
        "row_stride": _count("Bytes between rows in data"),
        "cell_stride": _count("Bytes between cells within a row in data"),
        "fields": {"type": "array", "description": "Fields of each cell in data",
                   "items": {"title": "foxglove.PackedElementField", "type": "object",
                             "description": "A field within each packed cell",
                             "properties": {
                                 "name": {"type": "string", "description": "Name of the field"},
                                 "offset": _count("Byte offset within the cell"),
                                 "type": {"title": "foxglove.NumericType",
                                          "description": "Type of the field (little-endian)",
                                          "oneOf": [{"title": t, "const": i}
                                                    for i, t in enumerate(_NUMERIC_TYPES)]}}}},
        "data": {"type": "string", "contentEncoding": "base64",
                 "description": "Cells packed by fields, row-major (y-major)"},
    },
}
"""The JSON schema of ``foxglove.Grid`` (the fields and types of Foxglove's definition, in
jsonschema form); Foxglove recognises the message by the schema name."""

WORLD_STATS_SCHEMA: dict[str, Any] = {
    "title": "agentloop.WorldStats", "type": "object",
    "description": "the world's own figures after a tick (world.stats()), plain JSON numbers",
    "properties": {"tick": {"type": "integer"}},
    "additionalProperties": True}

SCHEMAS: dict[str, dict[str, Any]] = {TOPIC_GRID: GRID_SCHEMA,
                                      TOPIC_WORLD_STATS: WORLD_STATS_SCHEMA}
"""Each visual topic's schema (registered in every file of a log written with ``visual``)."""


class VisualSource(Protocol):
    """What a recorder draws the visual topics from: a grid world (``world.grid.GridWorld``,
    ``world.foraging.ForagingWorld``)."""

    def grid_layers(self) -> Mapping[str, np.ndarray] | None:
        """``(rows, columns)`` arrays of the cells, agent counts first (``"agents"``), or None
        when the world has no grid."""
        ...


@dataclass(frozen=True)
class VisualFrame:
    """A tick's visual messages: the grid's layers (copied) and the world's figures."""

    grid: Mapping[str, np.ndarray] | None
    stats: Mapping[str, Any] | None = None


def frame_of(source: Any) -> VisualFrame:
    """The visual frame of ``source`` now: copies of its ``grid_layers()`` and its ``stats()``
    when it has one."""
    layers = source.grid_layers()
    grid = None if layers is None else {str(k): np.array(v, copy=True)
                                        for k, v in layers.items()}
    stats = getattr(source, "stats", None)
    return VisualFrame(grid, None if stats is None else dict(stats()))


def _field_type(a: np.ndarray) -> int:
    if a.dtype.kind == "b" or a.dtype == np.uint8:
        return UINT8
    if a.dtype.kind in "iu":
        return UINT32
    return FLOAT32


def encode_grid(layers: Mapping[str, np.ndarray], wall_time: float) -> dict[str, Any]:
    """A ``foxglove.Grid`` message of ``layers`` (``(rows, columns)`` each; bools and uint8 as
    UINT8, other integers as UINT32 clipped to its range, the rest as FLOAT32), one unit a
    cell, the world's row 0 at the top (largest y)."""
    arrays = [np.asarray(a) for a in layers.values()]
    shape = arrays[0].shape
    if any(a.ndim != 2 or a.shape != shape for a in arrays):
        raise ValueError(f"grid layers must be 2-D arrays of one shape, got "
                         f"{[a.shape for a in arrays]}")
    types = [_field_type(a) for a in arrays]
    packed = np.zeros(shape, dtype=[(name, _FIELD_TYPES[t])
                                    for name, t in zip(layers, types, strict=True)])
    for name, a, t in zip(layers, arrays, types, strict=True):
        if t == UINT32:
            a = np.clip(a, 0, np.iinfo(np.uint32).max)
        packed[name] = a
    packed = packed[::-1]                 # data row 0 is y = 0: the world's bottom row
    stride = packed.dtype.itemsize
    sec, nsec = divmod(int(round(wall_time * 1e9)), 1_000_000_000)
    return {
        "timestamp": {"sec": sec, "nsec": nsec}, "frame_id": FRAME_ID,
        "pose": {"position": {"x": 0.0, "y": 0.0, "z": 0.0},
                 "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
        "column_count": int(shape[1]), "cell_size": {"x": 1.0, "y": 1.0},
        "row_stride": stride * int(shape[1]), "cell_stride": stride,
        "fields": [{"name": name, "offset": packed.dtype.fields[name][1], "type": t}
                   for name, t in zip(layers, types, strict=True)],
        "data": base64.b64encode(np.ascontiguousarray(packed).tobytes()).decode("ascii")}


def decode_grid(doc: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The layers of a ``foxglove.Grid`` message from :func:`encode_grid`, in the world's row
    order (``(rows, columns)`` each); ValueError / KeyError / TypeError for a malformed one."""
    raw = base64.b64decode(doc["data"], validate=True)
    cols, stride = int(doc["column_count"]), int(doc["cell_stride"])
    if cols <= 0 or stride <= 0 or int(doc["row_stride"]) != cols * stride \
            or len(raw) % (cols * stride):
        raise ValueError(f"grid of {len(raw)} bytes does not hold rows of {cols} cells of "
                         f"{stride} bytes")
    rows = len(raw) // (cols * stride)
    cells = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols, stride)
    out = {}
    for f in doc["fields"]:
        dtype = _FIELD_TYPES[int(f["type"])]
        offset = int(f["offset"])
        column = np.ascontiguousarray(cells[:, :, offset:offset + dtype.itemsize])
        out[str(f["name"])] = column.view(dtype).reshape(rows, cols)[::-1]
    return out


def encode_stats(tick: int, stats: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/world/stats`` message: the log's ``tick`` and the world's figures (its own
    ``tick``, ticks since its reset, as ``world_tick``; non-finite numbers as null)."""
    out: dict[str, Any] = {"tick": tick}
    for key, value in stats.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out["world_tick" if key == "tick" else str(key)] = value
    return out
