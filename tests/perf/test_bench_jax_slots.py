"""The pymdp 1.x child holds its batched ``Agent`` and its jit(vmap) population side by side
(slots), and each of the bench's handles times its own (issue 16: the zoo's jit(vmap) figures
were the batched Agent's, because the child held one population and timed the last set up)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from perf.bench.config import PYMDP1, PYMDP1_VMAP, QUICK
from perf.bench.probes import Probes
from perf.bench.progress import Progress

#: The fake child's step time for each kernel, so a figure shows whose step it timed.
STEP_S = {"vmap": 0.001, "agent": 0.05}


class SlotChild:
    """A fake pymdp 1.x child with the real one's slot rules."""

    def __init__(self) -> None:
        self.slots: dict[str, str] = {}
        self.last = ""

    def model_file(self, name: str, policy_len: int | None = None) -> str:
        return f"/nowhere/{name}-{policy_len}.npz"

    def ask(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        op = request["op"]
        if op == "setup":
            kernel = request.get("kernel", "agent")
            slot = request.get("slot", kernel)
            self.slots[slot], self.last = kernel, slot
            return {"ok": True, "create_s": 0.1, "compile_s": 0.2, "bytes_per_agent": 8.0}
        if op == "time":
            kernel = self.slots[request.get("slot", self.last)]
            return {"ok": True, "kernel": kernel, "times": [STEP_S[kernel]] * request["steps"]}
        if op == "drop":
            return {"ok": True, "dropped": self.slots.pop(request["slot"], None) is not None}
        raise AssertionError(op)

    def rss(self) -> int:
        return 0


def _probes(child: Any) -> Probes:
    probes = Probes(QUICK, Progress(1, stream=io.StringIO(), enabled=False))
    probes.jax = child
    return probes


def test_each_handle_times_its_own_population() -> None:
    child = SlotChild()
    probes = _probes(child)
    vmap = probes.open_population("dense-grid-10", 1, 10, PYMDP1_VMAP)
    agent = probes.open_population("dense-grid-10", 1, 10, PYMDP1)   # set up last
    assert vmap.step() == STEP_S["vmap"]
    assert agent.step() == STEP_S["agent"]
    assert probes.latency("dense-grid-10", 1, PYMDP1)[0] == STEP_S["agent"]
    assert vmap.step() == STEP_S["vmap"]          # the latency run did not replace it
    vmap.close()
    assert set(child.slots) == {"agent"}
    agent.close()
    assert child.slots == {}
    again = probes.open_population("dense-grid-10", 1, 10, PYMDP1_VMAP)  # set up afresh
    assert again.step() == STEP_S["vmap"]
    probes.jax = None


def test_a_child_timing_the_wrong_kernel_is_an_error() -> None:
    child = SlotChild()
    probes = _probes(child)
    vmap = probes.open_population("dense-grid-10", 1, 10, PYMDP1_VMAP)
    child.slots["vmap"] = "agent"                  # as the one-population child did
    with pytest.raises(RuntimeError, match="timed 'agent', not 'vmap'"):
        vmap.step()
    probes.jax = None


@pytest.mark.slow
def test_real_child_keeps_both_kernels(real_jax_peer: Any) -> None:
    """The real pymdp 1.x child (skipped unless its venv works): both slots step, a dropped
    slot is refused by name, and a ``time`` without a slot times the last set up."""
    peer = real_jax_peer
    for kernel in ("vmap", "agent"):
        info = peer.ask({"op": "setup", "model": peer.model_file("tmaze", 1),
                         "policy_len": 1, "n": 3, "seed": 0, "kernel": kernel})
        assert info["slot"] == kernel
    for kernel in ("vmap", "agent"):
        answer = peer.ask({"op": "time", "steps": 1, "slot": kernel})
        assert answer["kernel"] == kernel and len(answer["times"]) == 1
    assert peer.ask({"op": "time", "steps": 1})["kernel"] == "agent"
    assert peer.ask({"op": "drop", "slot": "vmap"})["dropped"]
    with pytest.raises(RuntimeError, match="time before setup.*'vmap'"):
        peer.ask({"op": "time", "steps": 1, "slot": "vmap"})


# -------------------------------------------------------------------- perf.vmap_check
def test_vmap_check_bad_case_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from perf.vmap_check import main as check_main

    with pytest.raises(SystemExit) as exc:
        check_main(["tmaze:1"])
    assert exc.value.code == 2 and "MODEL:POLICY_LEN:AGENTS" in capsys.readouterr().err


@pytest.mark.slow
def test_vmap_check_times_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    """The real pymdp 1.x child (skipped unless its venv works), a tiny case."""
    from perf.pymdp_jax import ensure_venv
    from perf.vmap_check import main as check_main

    if ensure_venv(install=False)[0] is None:
        pytest.skip("no pymdp 1.x venv")
    assert check_main(["tmaze:1:4", "--seconds", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "bench peer" in out and "tmaze:1:4" in out
