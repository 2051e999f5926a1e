"""The code base's structure rules (tools/structure.py) hold, and the checker finds breaches."""

from __future__ import annotations

from pathlib import Path

from tools.structure import breaches


def test_no_import_cycle_long_file_long_class_or_custom_new() -> None:
    assert breaches() == []


def test_the_checker_finds_each_kind_of_breach(tmp_path: Path) -> None:
    package = tmp_path / "engine"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from engine import b\n")
    (package / "b.py").write_text("from engine.a import f\n")
    body = "\n".join(f"    x{i} = {i}" for i in range(360))
    (package / "big.py").write_text(f"class Big:\n{body}\n" + "\n" * 300)
    (package / "maker.py").write_text("class Maker:\n    def __new__(cls):\n        return 1\n")
    found = breaches(tmp_path)
    assert "import cycle: engine.a <-> engine.b" in found
    assert any(line.startswith("engine/big.py: ") and "lines" in line for line in found)
    assert "engine/big.py: class Big, 361 lines" in found
    assert "engine/maker.py: Maker.__new__" in found
