"""The README's pymdp 1.x example runs as written, as a file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_readme_pymdp1_example_runs_as_a_script(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### pymdp 1.x models", 1)[1]
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "pymdp1_example.py"
    script.write_text(source)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "per-modality outcome table" in done.stdout
