"""The tick log's records and their JSON messages, each record's encoder beside its decoder.

Also the topics and their JSON schemas, and the array codec (base64 or inline lists). The
format and the reasons for it: docs/architecture.md.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import orjson

from engine.errors import TickLogError
from engine.model.limits import MAX_AGENTS, MAX_SEED
from engine.runtime.stale import StaleCounts
from engine.version import package_version

FORMAT_VERSION = 1
"""Version of the message layout; readers refuse files with a newer one."""
FORMAT_NAME = "agentloop-ticklog"
INLINE_MAX = 64
"""Arrays of at most this many elements are written as JSON lists, larger ones as base64."""
SNAPSHOT_PART_BYTES = 1 << 20
"""Belief snapshots larger than this are written as several messages (parts) of about this
many bytes of array data each, split along the arrays' first (agents) axis: encoding a 20 MB
snapshot in one go would hold the GIL for ~60 ms, in parts it holds it ~3 ms at a time."""

TOPIC_HEADER = "/agentloop/header"
TOPIC_TICK = "/agentloop/tick"
TOPIC_BELIEFS = "/agentloop/beliefs"
TOPIC_FOOTER = "/agentloop/footer"

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def to_json(doc: Mapping[str, Any]) -> bytes:
    """A message's bytes: ``doc`` encoded by orjson (numpy values, non-string keys allowed)."""
    return orjson.dumps(doc, option=_JSON_OPTS)


def _loads(data: bytes | memoryview, path: str, where: str, topic: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TickLogError(f"{path}: corrupt record {where}: expected a JSON "
                           f"{topic} message ({exc})") from None


def _corrupt(path: str, where: str, what: str, exc: Exception) -> TickLogError:
    return TickLogError(f"{path}: corrupt record {where}: expected a {what} message "
                        f"({type(exc).__name__}: {exc})")


def _engine_version() -> str:
    return package_version()


# ------------------------------------------------------------------------------------ header
@dataclass(frozen=True)
class TickLogHeader:
    """What a run needs to be replayed: written once, first. Plain data (``to_dict``)."""

    n_agents: int
    hz: float | None = None
    seed: int = 0
    workers: int = 0
    model_hash: str = ""
    model_npz: bytes | None = None
    """The model's ``GenerativeModel.save`` bytes (opaque here), or None."""
    config: dict[str, Any] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    engine_version: str = field(default_factory=_engine_version)
    format_version: int = FORMAT_VERSION
    created_unix: float | None = None
    """Wall time the log was opened; the writer fills it in when None."""
    set_id: str | None = None
    """Shared by the files of a rotated set (``TickLogWriter(max_bytes=...)``); None for a
    log written as one file."""
    set_index: int = 0
    """This file's place in its set: 0 for the first, 1 for ``run.001.mcap``, ..."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TickLogHeader:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def encode_header(header: TickLogHeader) -> dict[str, Any]:
    doc = header.to_dict()
    npz = doc["model_npz"]
    doc["model_npz"] = None if npz is None else base64.b64encode(npz).decode("ascii")
    doc["format"] = FORMAT_NAME
    return doc


def decode_header(data: bytes | memoryview, path: str, where: str) -> TickLogHeader:
    doc = _loads(data, path, where, TOPIC_HEADER)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise TickLogError(f"{path}: not an agentloop tick log: expected "
                           f"format {FORMAT_NAME!r} in the header message {where}")
    fv = doc.get("format_version")
    if not isinstance(fv, int) or fv > FORMAT_VERSION:
        raise TickLogError(f"{path}: tick log format version {fv!r} (header {where})"
                           f" is newer than this reader's ({FORMAT_VERSION})")
    try:
        _check_header(doc)
        npz = doc.get("model_npz")
        doc["model_npz"] = None if npz is None else base64.b64decode(npz, validate=True)
        return TickLogHeader.from_dict(doc)
    except (TypeError, ValueError, binascii.Error) as exc:
        raise _corrupt(path, where, "header", exc) from None


MAX_NESTING = 32
MAX_SET_INDEX = 10**9
"""Most files in a rotated set."""
"""Deepest nesting of lists and objects accepted in a header's config, world and extra."""
_HEADER_INTS = {"n_agents": (0, MAX_AGENTS), "seed": (0, MAX_SEED), "workers": (0, 1 << 16),
                "set_index": (0, MAX_SET_INDEX)}


def _check_header(doc: dict[str, Any]) -> None:
    """Every field a reader or replay uses has its type and range (TypeError / ValueError)."""
    for key, (low, high) in _HEADER_INTS.items():
        value = doc.get(key, 0)
        if not _whole(value) or not low <= value <= high:
            raise ValueError(f"{key} must be a whole number in {low}..{high:,}, got "
                             f"{_short(value)}")
    for key in ("hz", "created_unix"):
        value = doc.get(key)
        if value is not None and (not _number(value) or not math.isfinite(value)
                                  or (key == "hz" and value <= 0)):
            raise ValueError(f"{key} must be {'a number > 0' if key == 'hz' else 'a number'} "
                             f"or null, got {_short(value)}")
    for key in ("config", "world", "extra"):
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise TypeError(f"{key} must be a JSON object, got {type(value).__name__}")
        if _depth(value) > MAX_NESTING:
            raise ValueError(f"{key} nests lists and objects more than {MAX_NESTING} deep")
    for key in ("model_hash", "engine_version", "model_npz", "set_id"):
        value = doc.get(key, "")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{key} must be a string, got {type(value).__name__}")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_NESTING:
                stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                      else item))
    return deepest


# -------------------------------------------------------------------------------------- tick
@dataclass(frozen=True)
class TickRecord:
    """One tick as read back. Arrays are read-only; integer arrays come back in the smallest
    dtype that holds their values."""

    tick: int
    wall_time: float
    duration_s: float
    level: int
    observations: np.ndarray
    actions: np.ndarray
    stale_agents: np.ndarray
    timings: dict[str, float]
    failover: str | None = None
    """Set when the population's device failed in this tick and the run went on on the CPU
    from a copy of its state (``Engine.failovers``): the error, as recorded."""
    resets: tuple[tuple[np.ndarray, bool], ...] = ()
    """The resets made before this tick (``Engine.reset``), in order: (agent indices,
    keep_action); replay repeats them before stepping."""
    stale_reasons: StaleCounts | None = None
    """The stale agents by reason, where the log recorded them (in ticks with any, by writers
    that know the reasons); None otherwise. Replay uses only ``stale_agents``."""


_TICK_ARRAYS = ("observations", "actions", "stale_agents")


def encode_tick(item: dict[str, Any]) -> dict[str, Any]:
    """The message of a tick queued by ``TickLogWriter.write_tick``: its integer arrays in
    their smallest dtype, encoded."""
    out = {**item, **{key: _encode_array(_compact(item[key])) for key in _TICK_ARRAYS}}
    if "resets" in item:
        out["resets"] = [{"agents": _encode_array(_compact(r["agents"])),
                          "keep_action": r["keep_action"]} for r in item["resets"]]
    return out


def decode_tick(data: bytes | memoryview, path: str, where: str) -> TickRecord:
    doc = _loads(data, path, where, TOPIC_TICK)
    try:
        return TickRecord(
            tick=_bounded(doc["tick"], "tick", MAX_TICK), wall_time=float(doc["wall_time"]),
            duration_s=float(doc["duration_s"]), level=_bounded(doc["level"], "level",
                                                                MAX_LEVEL_VALUE),
            observations=_decode_array(doc["observations"]),
            actions=_decode_array(doc["actions"]),
            stale_agents=_decode_array(doc["stale_agents"]),
            timings={str(k): math.nan if v is None else float(v)
                     for k, v in doc["timings"].items()},
            failover=_optional_str(doc.get("failover")),
            resets=tuple(_decode_reset(r) for r in doc.get("resets", ())),
            stale_reasons=_stale_reasons(doc.get("stale_reasons")))
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise _corrupt(path, where, "tick", exc) from None


def _stale_reasons(doc: Any) -> StaleCounts | None:
    """A tick's optional stale counts by reason: absent, or an object of whole numbers."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise TypeError(f"stale_reasons must be a JSON object, got {type(doc).__name__}")
    return StaleCounts.from_dict(doc)


def _decode_reset(doc: Any) -> tuple[np.ndarray, bool]:
    keep = doc["keep_action"]
    if not isinstance(keep, bool):
        raise TypeError(f"a reset's keep_action must be true or false, got {_short(keep)}")
    return _decode_array(doc["agents"]), keep


MAX_TICK = 2**32 - 1
"""Tick numbers are MCAP message sequence numbers (uint32)."""
MAX_LEVEL_VALUE = 255
"""Degradation levels are small numbers (the engine's ladder stops at 4)."""


def _bounded(value: Any, name: str, high: int) -> int:
    """``value`` as a whole number in ``0..high`` (ValueError otherwise)."""
    if not _whole(value) or not 0 <= value <= high:
        raise ValueError(f"{name} must be a whole number in 0..{high:,}, got {_short(value)}")
    return int(value)


def _optional_str(value: Any) -> str | None:
    """A tick's optional text field: None, or a string (anything else is corrupt)."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


# ---------------------------------------------------------------------------------- beliefs
@dataclass(frozen=True)
class BeliefSnapshot:
    """Belief arrays (one per factor, any dtype) at the end of ``tick``, with ``meta``."""

    tick: int
    arrays: tuple[np.ndarray, ...]
    meta: dict[str, Any]


def encode_snapshot(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The messages of one snapshot: ``part`` ``p`` of ``parts`` holds rows ``p`` of
    ``np.array_split(a, parts)`` of every array ``a``; ``meta`` rides on part 0."""
    arrays: tuple[np.ndarray, ...] = item["arrays"]
    total = sum(a.nbytes for a in arrays)
    parts = 1 if any(a.ndim == 0 for a in arrays) else max(1, -(-total // SNAPSHOT_PART_BYTES))
    pieces = [np.array_split(a, parts, axis=0) for a in arrays] if parts > 1 else None
    for p in range(parts):
        doc: dict[str, Any] = {
            "tick": item["tick"], "part": p, "parts": parts,
            "arrays": [_encode_array(a if pieces is None else pieces[f][p])
                       for f, a in enumerate(arrays)]}
        if p == 0:
            doc["meta"] = item["meta"]
        yield doc


def decode_snapshot(parts: Sequence[tuple[bytes | memoryview, str]], path: str,
                    cut_off: Callable[[], bool]) -> BeliefSnapshot | None:
    """One snapshot from its parts' messages ``(data, where)``; None when parts are missing
    and ``cut_off()`` says a crash cut the snapshot off."""
    where = parts[0][1]
    try:
        docs = [_loads(data, path, part_where, TOPIC_BELIEFS) for data, part_where in parts]
        n_parts = _bounded(docs[0]["parts"], "parts", MAX_TICK)
        if [int(d["part"]) for d in docs] != list(range(len(docs))) or len(docs) > n_parts:
            raise ValueError(f"parts {[d.get('part') for d in docs]} of {n_parts} found")
        if len(docs) < n_parts:
            if cut_off():
                return None
            raise ValueError(f"only {len(docs)} of its {n_parts} parts found")
        columns = zip(*(d["arrays"] for d in docs), strict=True)
        arrays = []
        for pieces in columns:
            decoded = [_decode_array(a) for a in pieces]
            arr = decoded[0] if n_parts == 1 else np.concatenate(decoded, axis=0)
            arr.flags.writeable = False
            arrays.append(arr)
        return BeliefSnapshot(tick=_bounded(docs[0]["tick"], "tick", MAX_TICK),
                              arrays=tuple(arrays),
                              meta=dict(docs[0]["meta"]))
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise _corrupt(path, where, "beliefs", exc) from None


# ------------------------------------------------------------------------------------ footer
@dataclass(frozen=True)
class TickLogFooter:
    """Written by :meth:`TickLogWriter.close`: the caller's ``totals`` and the writer's own."""

    totals: dict[str, Any]
    ticks_written: int
    snapshots_written: int
    queue_full_waits: int
    """How many times ``write_tick``/``write_beliefs`` found the queue full and waited."""
    error: str | None = None
    """Set when the log was closed by an exception leaving a ``with`` block."""
    next_file: str | None = None
    """The name (in the same folder) of the file a rotated log continues in; None in the
    last."""


def encode_footer(footer: TickLogFooter) -> dict[str, Any]:
    return {"totals": footer.totals, "error": footer.error,
            "ticks_written": footer.ticks_written,
            "snapshots_written": footer.snapshots_written,
            "queue_full_waits": footer.queue_full_waits, "next_file": footer.next_file}


def decode_footer(data: bytes | memoryview, path: str, where: str) -> TickLogFooter:
    doc = _loads(data, path, where, TOPIC_FOOTER)
    try:
        return TickLogFooter(
            totals=dict(doc["totals"]), ticks_written=int(doc["ticks_written"]),
            snapshots_written=int(doc["snapshots_written"]),
            queue_full_waits=int(doc["queue_full_waits"]), error=doc.get("error"),
            next_file=_optional_str(doc.get("next_file")))
    except (KeyError, TypeError, ValueError) as exc:
        raise _corrupt(path, where, "footer", exc) from None


# ----------------------------------------------------------------------------------- schemas
def _array_schema(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "properties": {"dtype": {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer"}},
                           "b64": {"type": "string", "contentEncoding": "base64"},
                           "data": {"type": "array"}}}


_SCHEMAS: dict[str, dict[str, Any]] = {
    TOPIC_HEADER: {"title": "agentloop.TickLogHeader", "type": "object", "properties": {
        "format": {"type": "string"}, "format_version": {"type": "integer"},
        "engine_version": {"type": "string"}, "n_agents": {"type": "integer"},
        "hz": {"type": ["number", "null"]}, "seed": {"type": "integer"},
        "workers": {"type": "integer"}, "model_hash": {"type": "string"},
        "model_npz": {"type": ["string", "null"], "contentEncoding": "base64"},
        "config": {"type": "object"}, "world": {"type": "object"}, "extra": {"type": "object"},
        "created_unix": {"type": ["number", "null"]}, "set_id": {"type": ["string", "null"]},
        "set_index": {"type": "integer"}}},
    TOPIC_TICK: {"title": "agentloop.TickRecord", "type": "object", "properties": {
        "tick": {"type": "integer"}, "wall_time": {"type": "number"},
        "duration_s": {"type": "number"}, "level": {"type": "integer"},
        "stale_count": {"type": "integer", "description": "how many agents are stale"},
        "observations": _array_schema("(agents, modalities) observation indices"),
        "actions": _array_schema("(agents, factors) action indices"),
        "stale_agents": _array_schema("indices of agents that kept their last action"),
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "failover": {"type": "string"},
        "stale_reasons": {"type": "object", "description": "stale agents by reason",
                          "additionalProperties": {"type": "integer"}},
        "resets": {"type": "array", "items": {"type": "object", "properties": {
            "agents": _array_schema("indices of the agents reset before this tick"),
            "keep_action": {"type": "boolean"}}}}}},
    TOPIC_BELIEFS: {"title": "agentloop.BeliefSnapshot", "type": "object", "properties": {
        "tick": {"type": "integer"}, "part": {"type": "integer"}, "parts": {"type": "integer"},
        "arrays": {"type": "array", "items": _array_schema("one factor's beliefs")},
        "meta": {"type": "object"}}},
    TOPIC_FOOTER: {"title": "agentloop.TickLogFooter", "type": "object", "properties": {
        "totals": {"type": "object"}, "ticks_written": {"type": "integer"},
        "snapshots_written": {"type": "integer"}, "queue_full_waits": {"type": "integer"},
        "error": {"type": ["string", "null"]}, "next_file": {"type": ["string", "null"]}}},
}
"""Each topic's JSON schema (registered in the MCAP file, for Foxglove)."""


# ------------------------------------------------------------------------------------ arrays
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)
_SIGNED = (np.int8, np.int16, np.int32, np.int64)


def _compact(a: np.ndarray) -> np.ndarray:
    """The same integer values in the smallest integer dtype that holds them."""
    if a.dtype.kind not in "iu" or a.size == 0:
        return a
    lo, hi = int(a.min()), int(a.max())
    for dt in _UNSIGNED if lo >= 0 else _SIGNED:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt, copy=False)
    return a


def _encode_array(a: np.ndarray) -> dict[str, Any]:
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    out: dict[str, Any] = {"dtype": le.dtype.str, "shape": list(a.shape)}
    if a.size <= INLINE_MAX and a.dtype.kind in "biu":  # floats: base64, exact (NaN, inf)
        out["data"] = le.ravel().tolist()
    else:
        out["b64"] = base64.b64encode(np.ascontiguousarray(le).tobytes()).decode("ascii")
    return out


def _decode_array(obj: Any) -> np.ndarray:
    """Inverse of :func:`_encode_array`; raises ValueError/KeyError/TypeError on bad input."""
    dtype = np.dtype(obj["dtype"])
    if dtype.kind not in "biufc" or dtype.hasobject:
        raise ValueError(f"unsupported array dtype {obj['dtype']!r}")
    shape = tuple(int(s) for s in obj["shape"])
    if any(s < 0 for s in shape):
        raise ValueError(f"negative array shape {shape}")
    if "b64" in obj:
        arr = np.frombuffer(base64.b64decode(obj["b64"], validate=True), dtype=dtype)
    else:
        try:
            arr = np.asarray(obj["data"], dtype=dtype)
        except OverflowError as exc:  # a value the dtype cannot hold (300 as uint8)
            raise ValueError(f"array data out of range for {dtype}: {exc}") from None
    if arr.size != math.prod(shape):
        raise ValueError(f"array has {arr.size} elements, its shape {shape} needs "
                         f"{math.prod(shape)}")
    arr = arr.reshape(shape)
    arr.flags.writeable = False
    return arr
