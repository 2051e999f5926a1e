"""Small hostile files that declare (or inflate to) gigabytes: a zstd-bomb tick log, a deflate
bomb model, tick logs whose headers ask for more than they hold. Built by hand from their
formats' framing, in well under a second each."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import orjson
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

from engine.model.npz_io import MODEL_FORMAT
from engine.ticklog import schema as ticklog

GiB = 1 << 30
MCAP_MAGIC = b"\x89MCAP0\r\n"


# ------------------------------------------------------------------------------- zstd bombs
def zstd_rle_frame(total: int, block: int = 1 << 17) -> bytes:
    """A zstd frame of ``total`` zero bytes made of RLE blocks (4 bytes per 128 KiB), with no
    content size in its header: 2 GiB in 64 KiB."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out += bytes([0x00, (17 - 10) << 3])           # no content size; a 128 KiB window
    blocks = total // block
    for i in range(blocks):
        last = 1 if i == blocks - 1 else 0
        out += (last | (1 << 1) | (block << 3)).to_bytes(3, "little") + b"\x00"
    return bytes(out)


def _record(op: int, body: bytes) -> bytes:
    return struct.pack("<BQ", op, len(body)) + body


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def zstd_bomb_log(inflate: int = 2 * GiB, declare: int = 1000) -> bytes:
    """An MCAP file (cut off after its first chunk) whose one zstd chunk declares ``declare``
    bytes and inflates to ``inflate`` zero bytes."""
    header = _record(0x01, _string("") + _string("bomb"))
    data = zstd_rle_frame(inflate)
    chunk = (struct.pack("<QQQI", 0, 0, declare, 0) + _string("zstd")
             + struct.pack("<Q", len(data)) + data)
    return MCAP_MAGIC + header + _record(0x06, chunk)


# ------------------------------------------------------------------------------- npz bombs
def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _deflated_zeros(total: int, step: int = 1 << 24) -> bytes:
    """Raw deflate of ``total`` zero bytes, not finished (more blocks may follow): each fully
    flushed piece of ``step`` zeros compresses to the same bytes, so it is compressed once."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(bytes(step)) + comp.flush(zlib.Z_FULL_FLUSH)
    rest = total % step
    tail = comp.compress(bytes(rest)) + comp.flush(zlib.Z_FINISH)
    return piece * (total // step) + tail


def _zip(members: list[tuple[str, bytes, bytes, int, int]]) -> bytes:
    """A zip archive of ``(name, stored or deflated bytes, header, crc, size)`` members; the
    header is each member's first bytes (uncompressed, stored ahead of deflated data)."""
    out, central = bytearray(), bytearray()
    for name, payload, method_flag, crc, size in members:
        method = 8 if method_flag == b"deflate" else 0
        offset = len(out)
        fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 0x21, crc, len(payload), size,
                             len(name), 0)
        out += b"PK\x03\x04" + fields + name.encode() + payload
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields
                    + struct.pack("<HHHII", 0, 0, 0, 0, offset) + name.encode())
    start = len(out)
    out += central
    out += b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(members), len(members),
                                       len(central), start, 0)
    return bytes(out)


def _stored(name: str, arr: np.ndarray) -> tuple[str, bytes, bytes, int, int]:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    data = buf.getvalue()
    return name, data, b"stored", zlib.crc32(data), len(data)


def _deflated_array(name: str, shape: tuple[int, ...]) -> tuple[str, bytes, bytes, int, int]:
    """A member holding float64 zeros of ``shape``, deflated (the header as its own block)."""
    header = _npy_header(shape)
    count = 8 * int(np.prod(shape))
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = head.compress(header) + head.flush(zlib.Z_FULL_FLUSH) + _deflated_zeros(count)
    return (name, body, b"deflate", _crc_of_zeros_after(zlib.crc32(header), count),
            len(header) + count)


def npz_bomb(inflate: int = GiB, consistent: bool = False) -> bytes:
    """A model file of about 1 MB whose ``A_0`` inflates to ``inflate`` bytes of zeros: with
    three state columns against a ``B_0`` of two states (inconsistent), or (``consistent``)
    one column over one state with a ``C_0`` that inflates as much (only the file's size
    gives it away)."""
    states = 1 if consistent else 2
    n = inflate // 8 // (1 if consistent else 3)
    meta = {"format": MODEL_FORMAT, "num_modalities": 1, "num_factors": 1,
            "A_factor_list": [[0]], "control_fac_idx": [0], "has_E": False, "has_pA": False,
            "has_pB": False, "has_policies": False}
    B = np.zeros((states, states, 1))
    B[np.arange(states), np.arange(states), 0] = 1.0
    members = [_deflated_array("A_0.npy", (n, 1) if consistent else (n, 3)),
               _stored("B_0.npy", B),
               _deflated_array("C_0.npy", (n,)) if consistent else _stored("C_0.npy",
                                                                           np.zeros(1)),
               _stored("D_0.npy", np.full(states, 1.0 / states)),
               _stored("meta.npy", np.frombuffer(json.dumps(meta).encode(), np.uint8))]
    return _zip(members)


def _crc_of_zeros_after(crc: int, count: int, step: int = 1 << 24) -> int:
    zeros = bytes(step)
    for _ in range(count // step):
        crc = zlib.crc32(zeros, crc)
    return zlib.crc32(bytes(count % step), crc)


# ------------------------------------------------------------------- logs with hostile headers
def log_messages(path: Path) -> list[tuple[str, int, int, bytes]]:
    """(topic, sequence, log time, payload) of every message of a tick log, in order."""
    with open(path, "rb") as f:
        return [(channel.topic, m.sequence, m.log_time, bytes(m.data))
                for _, channel, m in make_reader(f).iter_messages()]


def write_log(path: Path, messages: list[tuple[str, int, int, bytes]]) -> Path:
    """A tick log with the writer's channels holding exactly ``messages``."""
    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=1 << 16, compression=CompressionType.ZSTD)
        writer.start(library="bombs")
        channels = {}
        for topic, schema in ticklog._SCHEMAS.items():
            sid = writer.register_schema(schema["title"], "jsonschema", orjson.dumps(schema))
            channels[topic] = writer.register_channel(topic, "json", sid)
        for topic, seq, log_time, payload in messages:
            writer.add_message(channels[topic], log_time, payload, log_time, seq)
        writer.finish()
    return path


def with_header(source: Path, path: Path, raw: bytes | None = None, **fields: object) -> Path:
    """``source`` rewritten to ``path`` with header ``fields`` replaced (or the header's
    JSON replaced by ``raw``)."""
    messages = log_messages(source)
    topic, seq, log_time, payload = messages[0]
    assert topic == ticklog.TOPIC_HEADER
    if raw is None:
        doc = json.loads(payload)
        doc.update(fields)
        raw = json.dumps(doc).encode()
    messages[0] = (topic, seq, log_time, raw)
    return write_log(path, messages)


def with_tick_field(source: Path, path: Path, **fields: object) -> Path:
    """``source`` with ``fields`` replaced in its first tick message."""
    messages = log_messages(source)
    i = next(k for k, m in enumerate(messages) if m[0] == ticklog.TOPIC_TICK)
    topic, seq, log_time, payload = messages[i]
    doc = json.loads(payload)
    doc.update(fields)
    messages[i] = (topic, seq, log_time, json.dumps(doc).encode())
    return write_log(path, messages)


def nested(depth: int) -> bytes:
    """JSON of an object nested ``depth`` levels deep."""
    return b'{"a":' * depth + b"1" + b"}" * depth
