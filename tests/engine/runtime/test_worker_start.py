"""Workers start from the package's own entry point: a user's script is never imported again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _embed_example() -> str:
    """The README's embedding example (which has no ``__main__`` guard), at a small size."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Embed agents in your own loop", 1)[1]
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "__main__" not in source, "the README's example is guarded again"
    source = re.sub(r"\b100_000\b", "2_000", source)
    return re.sub(r"\b10_000\b", "300", source)


def test_readme_embed_example_runs_as_a_script_without_a_main_guard(tmp_path: Path) -> None:
    script = tmp_path / "embed.py"
    script.write_text(_embed_example() + "print('done', engine.tick)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=ENV, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "done 1"


def test_workers_do_not_import_the_main_module(tmp_path: Path) -> None:
    """A script that records each import of itself: imported once, by the master only."""
    marks = tmp_path / "imports"
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(f"""
        import os
        with open({str(marks)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        import numpy as np
        from engine import Engine
        from world.models import grid_model
        with Engine(grid_model(3), 40, workers=2) as engine:
            engine.step(np.zeros((40, 2), dtype=np.int64))
            print(len(engine.worker_pids))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=ENV, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["2"]
    assert len(marks.read_text().split()) == 1
