"""The region's layout: the C header and the ctypes header agree field by field, the array
offsets follow the documented rule, and a header of another ABI is refused."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tomllib

from engine.errors import ServeError
from engine.serve import include_dir
from engine.serve.layout import (
    ALIGN,
    HEADER_BYTES,
    MAGIC,
    Header,
    RegionLayout,
    message_of,
    set_message,
)
from tests.serve.support import REPO, build_c
from tools import cli


def test_the_c_header_has_the_python_headers_offsets(tmp_path: Path) -> None:
    fields = [name for name, _ in Header._fields_]
    lines = "\n".join(f'    printf("{name} %zu %zu\\n", offsetof(agentloop_header, {name}), '
                      f'sizeof(((agentloop_header *)0)->{name}));' for name in fields)
    source = tmp_path / "offsets.c"
    source.write_text('#include "agentloop_abi.h"\n#include <stddef.h>\n#include <stdio.h>\n'
                      f'int main(void) {{\n{lines}\n'
                      '    printf("sizeof %zu 0\\n", sizeof(agentloop_header));\n'
                      '    return 0;\n}\n')
    out = subprocess.run([str(build_c(source, tmp_path / "offsets"))], capture_output=True,
                         text=True, check=True).stdout
    seen = {name: (int(offset), int(size))
            for name, offset, size in (line.split() for line in out.splitlines())}
    for name, _ in Header._fields_:
        python = (getattr(Header, name).offset, getattr(Header, name).size)
        assert seen[name] == python, name
    assert seen["sizeof"][0] == HEADER_BYTES == ctypes.sizeof(Header)


def test_arrays_are_aligned_and_in_the_documented_order() -> None:
    layout = RegionLayout.for_shape(1001, 3, 2)
    offsets = [layout.num_obs_offset, layout.num_actions_offset, layout.obs_offset,
               layout.actions_offset, layout.stale_offset, layout.region_bytes]
    assert offsets[0] == HEADER_BYTES
    assert all(o % ALIGN == 0 for o in offsets)
    assert offsets == sorted(offsets)
    assert layout.actions_offset - layout.obs_offset >= 8 * 1001 * 3
    assert layout.stale_offset - layout.actions_offset >= 8 * 1001 * 2
    assert layout.region_bytes - layout.stale_offset >= 1001
    abi = (REPO / "docs" / "abi.md").read_text()
    assert "align64" in abi and "num_actions_offset" in abi


def _header(layout: RegionLayout) -> tuple[Header, np.ndarray]:
    buffer = np.zeros(layout.region_bytes, dtype=np.uint8)
    header = Header.from_buffer(buffer)
    layout.write(header)
    header.magic = MAGIC
    return header, buffer


def test_a_header_round_trips_and_its_views_land_on_the_offsets() -> None:
    layout = RegionLayout.for_shape(10, 2, 1)
    header, buffer = _header(layout)
    assert RegionLayout.from_header(header, len(buffer), "here") == layout
    views = layout.views(buffer)
    views.obs[3, 1] = 77
    assert buffer[layout.obs_offset:].view(np.int64)[3 * 2 + 1] == 77
    assert views.actions.shape == (10, 1) and views.stale.shape == (10,)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("magic", b"NOTOURS!", "not an agentloop serve region"),
    ("abi_version", 2, "ABI version 2 .* this client speaks version 1"),
    ("obs_dtype", 2, "observation/action dtypes 2/1"),
    ("stale_offset", 64, "header offsets or sizes are inconsistent"),
])
def test_a_header_of_another_abi_is_refused(field: str, value: object, message: str) -> None:
    header, buffer = _header(RegionLayout.for_shape(10, 2, 1))
    setattr(header, field, value)
    with pytest.raises(ServeError, match=f"^here: {message}"):
        RegionLayout.from_header(header, len(buffer), "here")


def test_a_region_smaller_than_its_header_says_is_refused() -> None:
    header, buffer = _header(RegionLayout.for_shape(10, 2, 1))
    with pytest.raises(ServeError, match="inconsistent"):
        RegionLayout.from_header(header, len(buffer) - 1, "here")


def test_messages_are_one_line_and_cut_to_fit() -> None:
    header = Header()
    set_message(header, "bad\nobservation " + "é" * 300)
    text = message_of(header)
    assert text.startswith("bad observation é") and "\n" not in text
    assert len(text.encode()) <= 255


def test_docs_abi_md_lists_every_header_field_at_its_offset() -> None:
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| `(\w+)` \|", (REPO / "docs" / "abi.md").read_text(),
                      flags=re.MULTILINE)
    assert [(int(offset), name) for offset, name in rows] == [
        (getattr(Header, name).offset, name) for name, _ in Header._fields_]


def test_the_header_ships_with_the_package_and_the_repository_links_to_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``include_dir()`` holds the header inside the package (package data, so it is in the
    wheel); ``include/agentloop_abi.h`` at the repository's top is the same file; ``agentloop
    serve --include-dir`` prints the folder."""
    header = Path(include_dir()) / "agentloop_abi.h"
    assert header.is_file()
    assert (REPO / "include" / "agentloop_abi.h").resolve() == header.resolve()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "include/*.h" in pyproject["tool"]["setuptools"]["package-data"]["engine.serve"]
    assert cli.main(["serve", "--include-dir"]) == 0
    assert capsys.readouterr().out.strip() == include_dir()
