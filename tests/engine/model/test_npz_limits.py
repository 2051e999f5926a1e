"""Reading model files: every member's npy header is checked (against the others, the file's
size and the limits) before any array is loaded."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from engine import GenerativeModel, ModelError
from engine.model import npz_io
from engine.model.limits import MAX_POLICIES
from world.models import grid_model, random_model


def _arrays(model: GenerativeModel) -> dict[str, np.ndarray]:
    return dict(np.load(io.BytesIO(model.to_npz_bytes())))


def _save(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def test_a_compressed_model_loads_like_a_stored_one() -> None:
    model = random_model(np.random.default_rng(0), [3, 2], [2, 3], [2, 1],
                         A_factor_list=[[0], [0, 1]], with_pA=True, with_pB=True)
    data = _save(_arrays(model), compressed=True)
    assert GenerativeModel.from_npz_bytes(data).content_hash() == model.content_hash()


def test_other_dtypes_load_as_before(tmp_path: Path) -> None:
    arrays = _arrays(grid_model(2))
    arrays["B_0"] = arrays["B_0"].astype(np.int8)         # one-hot: exact as integers
    path = tmp_path / "m.npz"
    path.write_bytes(_save(arrays))
    assert GenerativeModel.load(path).content_hash() == grid_model(2).content_hash()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("A_0", np.full((4, 3), 0.25), r"A_0: declares shape \(4, 3\); the model's other arrays "
                                   r"make it \(4, 4\)"),
    ("C_1", np.zeros(4), r"C_1: declares shape \(4,\); the model's other arrays make it "
                         r"\(3,\)"),
    ("D_0", np.full(5, 0.2), r"D_0: declares shape \(5,\)"),
])
def test_declared_shapes_are_checked_against_each_other(key: str, value: np.ndarray,
                                                        message: str) -> None:
    arrays = _arrays(grid_model(2))
    arrays[key] = value
    with pytest.raises(ModelError, match=message):
        GenerativeModel.from_npz_bytes(_save(arrays), "m.npz")


def test_too_many_policies_are_refused_from_the_header() -> None:
    model = grid_model(2)
    arrays = _arrays(model)
    meta = json.loads(arrays["meta"].tobytes())
    meta["has_policies"] = True
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    arrays["policies"] = np.zeros((MAX_POLICIES + 1, 1, 1), np.int8)
    with pytest.raises(ModelError, match="declares 1,048,577 policies, more than"):
        GenerativeModel.from_npz_bytes(_save(arrays, compressed=True), "m.npz")


def test_a_member_holding_less_than_it_declares() -> None:
    data = bytearray(grid_model(2).to_npz_bytes())
    at = data.index(b"(4, 4)")                    # A_0's shape, the first member's header
    data[at:at + 6] = b"(9, 9)"
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("A_0.npy")
    name, extra = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name + extra
    crc = zlib.crc32(data[start:start + info.compress_size])
    struct.pack_into("<I", data, info.header_offset + 14, crc)
    struct.pack_into("<I", data, data.index(b"A_0.npy", data.index(b"PK\x01\x02")) - 30, crc)
    with pytest.raises(ModelError, match=r"A_0: declares 648 bytes of float64 \(9, 9\), its "
                                         r"entry holds 128"):
        GenerativeModel.from_npz_bytes(bytes(data), "m.npz")


def test_the_budget_follows_the_file_size(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _save(_arrays(grid_model(4)), compressed=True)
    monkeypatch.setattr(npz_io, "MODEL_FLOOR_BYTES", 1000)
    monkeypatch.setattr(npz_io, "MAX_INFLATION", 1)
    with pytest.raises(ModelError, match=r"declares [\d,]+ bytes of arrays \(as float64\) in "
                                         r"a [\d,]+-byte file; at most [\d,]+ are read"):
        GenerativeModel.from_npz_bytes(data, "m.npz")
    monkeypatch.setattr(npz_io, "MAX_INFLATION", 64)
    assert GenerativeModel.from_npz_bytes(data).num_states == (16,)


def test_a_member_claiming_more_than_deflate_can_give() -> None:
    data = bytearray(_save(_arrays(grid_model(2)), compressed=True))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("A_0.npy")
    entry = data.index(b"A_0.npy", data.index(b"PK\x01\x02")) - 46   # its central record
    assert struct.unpack_from("<I", data, entry + 24)[0] == info.file_size
    struct.pack_into("<I", data, entry + 24, info.compress_size * 2000)
    with pytest.raises(ModelError, match="more than compression can give"):
        GenerativeModel.from_npz_bytes(bytes(data), "m.npz")


def test_meta_larger_than_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npz_io, "MAX_META_BYTES", 10)
    with pytest.raises(ModelError, match=r"meta: is \d+ bytes, more than 10"):
        GenerativeModel.from_npz_bytes(grid_model(2).to_npz_bytes(), "m.npz")
