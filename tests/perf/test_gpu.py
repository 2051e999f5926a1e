"""``python -m perf.gpu`` runs end to end on the NumPy twin of the GPU path (CI has no GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.kernels.backends import cupy_available
from perf import gpu


def test_gpu_benchmark_runs_on_numpy(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    path = tmp_path / "gpu.json"
    assert gpu.main(["--backend", "xp-numpy", "--agents", "30", "--engine-agents", "20",
                     "--hz", "50", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["backend"] == "xp-numpy" and result["device"]["peak_gbs"] is None
    array, fused = result["throughput"]                         # both kernels, side by side
    assert (array["kernel"], fused["kernel"]) == ("array", "fused")
    for row in (array, fused):
        assert row["agents"] == 30 and row["agent_steps_per_s"] > 0
        assert row["state_bytes_per_agent_step"] > 2 * 100 * 4     # grid-10 beliefs, both ways
    assert [row["kernel"] for row in result["engine"]] == ["array", "fused"]
    assert result["engine"][0]["agents"] == 20
    out = capsys.readouterr().out
    assert "agent-steps/s" in out and "x the array path" in out


def test_gpu_benchmark_sweeps_launch_bounds(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    assert gpu.main(["--backend", "xp-numpy", "--agents", "10", "--engine-agents", "10",
                     "--kernel", "fused", "--min-blocks", "2", "8", "--fused-tree", "sparse",
                     "generic", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert [(r["kernel"], r["min_blocks"], r["tree"]) for r in result["throughput"]] == [
        ("fused", 2, "sparse"), ("fused", 8, "sparse"), ("fused", 2, "generic"),
        ("fused", 8, "generic")]
    assert [(r["kernel"], r["min_blocks"]) for r in result["engine"]] == [("fused", 2)]


@pytest.mark.skipif(cupy_available()[0], reason="a GPU is usable here")
def test_gpu_benchmark_without_a_gpu_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main(["--backend", "cupy", "--quick"]) == 2
    assert "needs CuPy and an NVIDIA GPU" in capsys.readouterr().err


def test_gpu_build_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m perf.gpu_build``: NVRTC then ptxas for sm_90, or one line saying what is
    missing."""
    from perf import gpu_build  # noqa: PLC0415
    from perf.nvrtc import nvrtc_library  # noqa: PLC0415

    path = tmp_path / "build.json"
    rc = gpu_build.main(["--models", "grid-5", "--policy-len", "1", "--min-blocks", "4",
                         "--json", str(path)])
    if nvrtc_library() is None or gpu_build.find_ptxas() is None:
        assert rc == 2 and "needs NVRTC" in capsys.readouterr().err
        return
    assert rc == 0
    (row,) = json.loads(path.read_text())["rows"]
    assert 0 < row["registers"] <= 65536 // (4 * 128)         # the launch bound holds
    assert row["threads_per_sm"] >= 4 * 128 and row["stack_bytes"] > 0
