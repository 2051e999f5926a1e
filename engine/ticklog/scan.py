"""Walking a tick log's MCAP records: the framing (up to a crash's cut) and chunk contents.

Every inconsistency raises :class:`TickLogError` naming the byte offset and what was expected.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from engine.errors import TickLogError

MAGIC = b"\x89MCAP0\r\n"

# MCAP opcodes (https://mcap.dev/spec)
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE = 0x01, 0x02, 0x03, 0x04, 0x05
_OP_CHUNK, _OP_MESSAGE_INDEX, _OP_DATA_END = 0x06, 0x07, 0x0F
_OPCODES = set(range(0x01, 0x10))
_REC = struct.Struct("<BQ")  # opcode, content length
_CHUNK_HEAD = struct.Struct("<QQQII")  # start, end, uncompressed size, crc, compression length
_MSG_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time

MAX_CHUNK_BYTES = 1 << 30
"""Most bytes a chunk may hold uncompressed (the writer's chunks are about 1 MiB; a tick of
ten million agents or a header with a large model makes one of tens of MB)."""
CHUNK_FLOOR_BYTES = 64 << 20
"""Chunks up to this size may compress by any ratio; larger ones by at most
``MAX_CHUNK_RATIO`` (so that a small file cannot declare gigabytes)."""
MAX_CHUNK_RATIO = 64
_READ_STEP = 1 << 20


@dataclass(frozen=True)
class Chunk:
    offset: int  # of the chunk record in the file
    length: int  # of its content


@dataclass(frozen=True)
class Message:
    topic: str
    sequence: int
    data: memoryview
    where: str  # for error messages


@dataclass(frozen=True)
class Framing:
    """What walking a file's records found: its chunks and where (if at all) it was cut."""

    size: int
    chunks: list[Chunk]
    truncated: bool
    truncated_at: int | None


def corrupt(path: str, offset: int, what: str) -> TickLogError:
    return TickLogError(f"{path}: corrupt record at offset {offset}: {what}")


def scan_records(f: BinaryIO, path: str, size: int) -> Framing:
    """Walk the record framing of the ``size``-byte file ``f`` (not the chunks' contents)."""
    head = f.read(len(MAGIC))
    if head != MAGIC:
        if not head:
            found = "the file is empty"
        elif MAGIC.startswith(head):
            found = f"the file ends after {len(head)} bytes"
        else:
            found = f"found {head[:8].hex(' ')}"
        raise TickLogError(f"{path}: not an agentloop tick log: expected the MCAP "
                           f"magic {MAGIC!r} at offset 0, {found}")
    f.seek(max(size - len(MAGIC), 0))
    closed = size >= 2 * len(MAGIC) + _REC.size and f.read(len(MAGIC)) == MAGIC
    chunks: list[Chunk] = []
    truncated = True
    truncated_at: int | None = None
    offset = len(MAGIC)
    while True:
        if offset + _REC.size > size:
            truncated_at = offset
            if closed:  # a finished file cannot end inside its records
                raise corrupt(path, offset, "expected an MCAP record, the file ends")
            break
        f.seek(offset)
        op, length = _REC.unpack(f.read(_REC.size))
        if op not in _OPCODES or (offset == len(MAGIC)) != (op == _OP_HEADER):
            expected = ("an MCAP header record" if offset == len(MAGIC)
                        else "an MCAP data record")
            raise corrupt(path, offset, f"expected {expected}, found opcode 0x{op:02x}")
        end = offset + _REC.size + length
        if end > size:
            if closed:
                raise corrupt(path, offset, f"record of {length} bytes (opcode 0x{op:02x}) "
                              f"runs past the end of the file ({size} bytes)")
            truncated_at = offset
            break
        if op == _OP_CHUNK:
            chunks.append(Chunk(offset, length))
        elif op == _OP_DATA_END:
            truncated = not closed
            truncated_at = end if not closed else None
            break
        elif op not in (_OP_HEADER, _OP_MESSAGE_INDEX, _OP_SCHEMA, _OP_CHANNEL):
            raise corrupt(path, offset, f"expected a chunk or message index record, "
                          f"found opcode 0x{op:02x}")
        offset = end
    return Framing(size, chunks, truncated, truncated_at)


def read_chunk(f: BinaryIO, chunk: Chunk, topics: dict[int, str], path: str) -> list[Message]:
    """The messages of ``chunk``, decompressed and CRC-checked; channels it declares are added
    to ``topics`` (channel id -> topic)."""
    f.seek(chunk.offset + _REC.size)
    content = f.read(chunk.length)
    try:
        return _parse_chunk(chunk, content, topics, path)
    except TickLogError:
        raise
    except (struct.error, ValueError, IndexError, KeyError, zstandard.ZstdError,
            UnicodeDecodeError, OverflowError) as exc:
        raise corrupt(path, chunk.offset, f"expected an MCAP chunk "
                      f"({type(exc).__name__}: {exc})") from None


def _inflate(data: bytes, usize: int, path: str, offset: int) -> bytearray:
    """The zstd ``data`` of a chunk that declares ``usize`` bytes, decompressed as a stream
    that stops one byte past ``usize``: a chunk that declares too much is refused before
    anything is decompressed, one that inflates past its declared size before the excess is
    held."""
    if usize > MAX_CHUNK_BYTES:
        raise corrupt(path, offset, f"chunk declares {usize:,} bytes uncompressed, more than "
                      f"a tick log chunk may hold ({MAX_CHUNK_BYTES:,})")
    if usize > CHUNK_FLOOR_BYTES and usize > MAX_CHUNK_RATIO * len(data):
        raise corrupt(path, offset, f"chunk declares {usize:,} bytes from {len(data):,} "
                      f"compressed ({usize // max(len(data), 1):,}:1); past "
                      f"{CHUNK_FLOOR_BYTES:,} bytes at most {MAX_CHUNK_RATIO}:1 is read")
    buf = bytearray(usize + 1)
    view = memoryview(buf)
    got = 0
    with zstandard.ZstdDecompressor().stream_reader(data) as reader:
        while got <= usize:
            n = reader.readinto(view[got:got + _READ_STEP])
            if not n:
                break
            got += n
    view.release()
    if got > usize:
        raise corrupt(path, offset, f"chunk decompresses to more than the {usize:,} bytes its "
                      f"header says")
    del buf[got:]
    return buf


def _parse_chunk(chunk: Chunk, content: bytes, topics: dict[int, str], path: str
                 ) -> list[Message]:
    _start, _end, usize, crc, clen = _CHUNK_HEAD.unpack_from(content, 0)
    pos = _CHUNK_HEAD.size
    compression = content[pos:pos + clen].decode()
    pos += clen
    (dlen,) = struct.unpack_from("<Q", content, pos)
    pos += 8
    if pos + dlen != len(content):
        raise corrupt(path, chunk.offset, f"chunk data of {dlen} bytes does not fill its "
                      f"record ({len(content) - pos} bytes)")
    data = content[pos:]
    if compression == "zstd":
        raw = _inflate(data, usize, path, chunk.offset)
    elif compression == "":
        raw = data
    else:
        raise corrupt(path, chunk.offset, f"expected zstd chunk compression, found "
                      f"{compression!r}")
    if len(raw) != usize:
        raise corrupt(path, chunk.offset, f"chunk decompresses to {len(raw)} bytes, its "
                      f"header says {usize}")
    if crc and zlib.crc32(raw) != crc:
        raise corrupt(path, chunk.offset, "chunk data fails its CRC check")
    view = memoryview(raw)
    messages: list[Message] = []
    p = 0
    while p < len(raw):
        op, length = _REC.unpack_from(raw, p)
        body = p + _REC.size
        if body + length > len(raw):
            raise corrupt(path, chunk.offset, f"record at byte {p} of the chunk runs past "
                          f"its end")
        if op == _OP_CHANNEL:
            cid, _sid, tlen = struct.unpack_from("<HHI", raw, body)
            topics[cid] = raw[body + 8:body + 8 + tlen].decode()
        elif op == _OP_MESSAGE:
            cid, seq, _log, _pub = _MSG_HEAD.unpack_from(raw, body)
            topic = topics.get(cid)
            if topic is None:
                raise corrupt(path, chunk.offset, f"message at byte {p} of the chunk is on "
                              f"channel {cid}, which was never declared")
            messages.append(Message(
                topic, seq, view[body + _MSG_HEAD.size:body + length],
                f"at offset {chunk.offset} (byte {p} of the chunk's data)"))
        elif op != _OP_SCHEMA:
            raise corrupt(path, chunk.offset, f"expected a schema, channel or message "
                          f"record at byte {p} of the chunk, found opcode 0x{op:02x}")
        p = body + length
    return messages
