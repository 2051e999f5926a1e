"""Quantized beliefs: how much each belief codec changes agents' decisions and beliefs.

``python -m perf.quantization [--quick] [--ticks T] [--agents N] [--json PATH]`` runs, for every
model of :data:`CASES`, a float64 reference population, one population per belief codec and a
jitter control side by side on the same observations; what it reports, and why the actions are
re-synchronised, is in docs/architecture.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine import Agents, GenerativeModel, InferenceConfig
from engine.kernels.beliefs import CODECS, BeliefCodec
from perf.kernels.plan import log
from perf.kernels.provenance import git_state, versions
from perf.kernels.report import table
from world.models import grid_model, random_model
from world.process import ModelProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: A quantized zero where the reference is positive is scored as this probability in KL.
KL_FLOOR = 1e-300
#: A disagreement is a near-tie when the reference's action marginals differ by at most this.
NEAR_TIE = 1e-6
#: Seeds of the two random models: changing them changes the benchmark.
RANDOM_SEEDS = (11, 12)


@dataclasses.dataclass(frozen=True)
class Case:
    """One model and planning horizon of the study."""

    name: str
    build: Callable[[], GenerativeModel]
    policy_len: int


def _random(seed: int) -> Callable[[], GenerativeModel]:
    def build() -> GenerativeModel:
        # peaked A and B (Dirichlet concentration 0.5): beliefs sharpen and carry small values
        return random_model(np.random.default_rng(seed), num_obs=[6, 5], num_states=[8, 5],
                            num_controls=[3, 2], sharpness=0.5)
    return build


CASES: tuple[Case, ...] = (
    Case("grid-10", lambda: grid_model(10), 1),
    Case("random-a", _random(RANDOM_SEEDS[0]), 1),
    Case("random-b", _random(RANDOM_SEEDS[1]), 2),
)


# ------------------------------------------------------------------------------------ measure
def kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) of every row, natural log.

    ``q`` is divided by its row sum first (float32 copies are normalised only to float32
    rounding) and floored at :data:`KL_FLOOR` where ``p > 0``; rounding below 0 reads 0.
    """
    q = q / q.sum(axis=1, keepdims=True)
    pos = p > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pos, p * (np.log(np.where(pos, p, 1.0))
                                   - np.log(np.maximum(q, KL_FLOOR))), 0.0)
    return np.maximum(terms.sum(axis=1), 0.0)         # KL >= 0; below 0 is float rounding


def action_marginal(agents: Agents, factor: int) -> np.ndarray:
    """q(u) of ``factor``'s first action, ``(n, U_f)``, from the population's q(pi)."""
    first = agents.policies[:, 0, factor]
    n_u = int(agents.layout.num_controls[factor])
    out = np.zeros((agents.n, n_u))
    for u in range(n_u):
        out[:, u] = agents.q_pi[:, first == u].sum(axis=1)
    return out


@dataclasses.dataclass
class Tally:
    """Running totals of one quantized population against the reference."""

    n: int
    n_factors: int
    agree: int = 0
    near_ties: int = 0
    first_diff: np.ndarray = dataclasses.field(init=False)
    kl_sum: np.ndarray = dataclasses.field(init=False)
    kl_max: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.first_diff = np.full(self.n, -1, dtype=np.int64)
        self.kl_sum = np.zeros(self.n_factors)
        self.kl_max = np.zeros(self.n_factors)


class Jitter:
    """Control: every entry times ``e^u``, ``u`` uniform in ``[-h, h]``, then renormalised.

    With ``h = step / 2`` of the uint16 code this is a random perturbation of the same size as
    uint16's rounding: the disagreements it causes are those of *any* belief error that large.
    """

    def __init__(self, h: float, offsets: np.ndarray, rng: np.random.Generator) -> None:
        self.h, self.offsets, self.rng = h, offsets, rng

    def apply(self, qs: np.ndarray) -> None:
        """Perturb the belief rows ``qs`` in place."""
        qs *= np.exp(self.rng.uniform(-self.h, self.h, size=qs.shape))
        for f in range(self.offsets.size - 1):
            block = qs[:, self.offsets[f]:self.offsets[f + 1]]
            block /= block.sum(axis=1, keepdims=True)


def _time_codec(codec: BeliefCodec, beliefs: np.ndarray, repeats: int = 5) -> tuple[float, float]:
    """Median ns per agent to encode and to decode ``beliefs`` (float32) through ``codec``."""
    codes = codec.empty(beliefs.shape[0])
    out = np.empty_like(beliefs)
    codec.encode(beliefs, codes)
    codec.decode(codes, out)
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        codec.encode(beliefs, codes)
        t1 = time.perf_counter()
        codec.decode(codes, out)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    n = beliefs.shape[0]
    return float(np.median(enc)) / n * 1e9, float(np.median(dec)) / n * 1e9


#: Name of the control population (see :class:`Jitter`).
CONTROL = "jitter"


def _round_trips(offsets: np.ndarray, n: int, seed: int
                 ) -> dict[str, tuple[Callable[[np.ndarray], None], BeliefCodec | None]]:
    """Per population: what happens to its beliefs between ticks, and its codec (if any)."""
    out: dict[str, tuple[Callable[[np.ndarray], None], BeliefCodec | None]] = {}
    for name in CODECS:
        codec = BeliefCodec(name, offsets)
        codes = codec.empty(n)

        def trip(qs: np.ndarray, codec: BeliefCodec = codec, codes: np.ndarray = codes) -> None:
            codec.encode(qs, codes)
            codec.decode(codes, qs)
        out[name] = (trip, codec)
    jitter = Jitter(BeliefCodec("uint16", offsets).step / 2, offsets,
                    np.random.default_rng(seed + 1))
    out[CONTROL] = (jitter.apply, None)
    return out


def _score(tally: Tally, t: int, a: np.ndarray, a_ref: np.ndarray,
           marginals: list[np.ndarray]) -> None:
    """Count tick ``t``'s agreements, near-ties and first disagreements into ``tally``."""
    same = (a == a_ref).all(axis=1)
    tally.agree += int(same.sum())
    differ = ~same
    if not differ.any():
        return
    rows = np.arange(a.shape[0])
    gap = np.zeros(a.shape[0])
    for f, m in enumerate(marginals):
        gap = np.maximum(gap, m[rows, a_ref[:, f]] - m[rows, a[:, f]])
    tally.near_ties += int((differ & (gap <= NEAR_TIE)).sum())
    tally.first_diff[differ & (tally.first_diff < 0)] = t


def run_case(case: Case, n: int, ticks: int, seed: int, timing_agents: int) -> list[dict]:
    """One episode of ``ticks`` ticks on ``case``: one row per codec, and the control's."""
    model = case.build()
    cfg = InferenceConfig(policy_len=case.policy_len, dtype="float64")
    ref = Agents(model, n, cfg, seed=seed)
    layout = ref.layout
    offsets = layout.state_offset
    trips = _round_trips(offsets, n, seed)
    pops = {name: Agents(model, n, cfg, seed=seed) for name in trips}
    tallies = {name: Tally(n, layout.n_factors) for name in trips}
    world = ModelProcess(model, n, np.random.default_rng(seed))
    t0 = time.perf_counter()
    for t in range(ticks):
        obs = world.observe()
        a_ref = ref.step(obs).copy()
        marginals = [action_marginal(ref, f) for f in range(layout.n_factors)]
        for name, agents in pops.items():
            tally = tallies[name]
            _score(tally, t, agents.step(obs), a_ref, marginals)
            trips[name][0](agents._qs)                         # the hand-off between ticks
            for f in range(layout.n_factors):
                lo, hi = offsets[f], offsets[f + 1]
                kl = kl_rows(ref._qs[:, lo:hi], agents._qs[:, lo:hi])
                tally.kl_sum[f] += kl.sum()
                tally.kl_max[f] = max(tally.kl_max[f], float(kl.max()))
            agents._prev_action[:] = a_ref                     # re-synchronise (see above)
        world.advance(a_ref)
    elapsed = time.perf_counter() - t0

    reps = max(1, timing_agents // n)
    timing_beliefs = np.ascontiguousarray(np.tile(ref._qs, (reps, 1)), dtype=np.float32)
    rows = []
    for name, tally in tallies.items():
        codec = trips[name][1]
        enc_ns, dec_ns = _time_codec(codec, timing_beliefs) if codec else (None, None)
        diverged = tally.first_diff >= 0
        rows.append({
            "model": case.name, "policy_len": case.policy_len, "codec": name,
            "control": codec is None,
            "num_states": [int(s) for s in layout.num_states],
            "agents": n, "ticks": ticks,
            "agreement": tally.agree / (n * ticks),
            "disagreements": n * ticks - tally.agree,
            "near_tie_disagreements": tally.near_ties,
            "agents_never_disagreeing": int((~diverged).sum()),
            "median_first_disagreement_tick": (float(np.median(tally.first_diff[diverged]))
                                               if diverged.any() else None),
            "kl_mean": (tally.kl_sum / (n * ticks)).tolist(),
            "kl_max": tally.kl_max.tolist(),
            "bytes_per_agent": codec.nbytes_per_agent() if codec else None,
            "float64_bytes_per_agent": layout.state_size * 8,
            "max_rel_error": codec.max_rel_error if codec else None,
            "encode_ns_per_agent": enc_ns, "decode_ns_per_agent": dec_ns,
            "timing_agents": int(timing_beliefs.shape[0]),
            "episode_s": elapsed,
        })
    return rows


def run(ticks: int, n: int, seed: int, command: str, timing_agents: int) -> dict[str, Any]:
    """Every case of :data:`CASES`; the JSON-ready results."""
    results: dict[str, Any] = {
        "command": command,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(), "git": git_state(), "versions": versions(),
        "method": "re-synchronised previous actions; KL(float64 reference || quantized) after "
                  "each tick's round trip",
        "ticks": ticks, "agents": n, "seed": seed, "rows": [],
    }
    for case in CASES:
        log(f"{case.name} policy_len={case.policy_len}: {n} agents x {ticks} ticks")
        results["rows"] += run_case(case, n, ticks, seed, timing_agents)
    return results


# ------------------------------------------------------------------------------------ report
def _ns(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _kl(values: Sequence[float]) -> str:
    return " ".join(f"{v:.1e}" for v in values)


def format_report(results: dict[str, Any]) -> str:
    """The printed table of a results dict."""
    headers = ["model", "L", "codec", "B/agent", "agree", "disagree", "near-tie",
               "never", "1st (med)", "KL mean / factor", "KL max / factor", "enc ns", "dec ns"]
    rows = []
    for r in results["rows"]:
        first = r["median_first_disagreement_tick"]
        rows.append([
            r["model"], str(r["policy_len"]), r["codec"],
            "-" if r["control"] else f"{r['bytes_per_agent']} ({r['float64_bytes_per_agent']})",
            f"{100 * r['agreement']:.4f}%", str(r["disagreements"]),
            str(r["near_tie_disagreements"]), f"{r['agents_never_disagreeing']}/{r['agents']}",
            "-" if first is None else f"{first:.0f}", _kl(r["kl_mean"]), _kl(r["kl_max"]),
            _ns(r["encode_ns_per_agent"]), _ns(r["decode_ns_per_agent"])])
    git = results["git"]
    return "\n".join([
        f"agentloop belief quantization  {results['started']}  host {results['host']}",
        f"command: {results['command']}",
        f"git {git.get('commit')} dirty={git.get('dirty')}; {results['agents']} agents x "
        f"{results['ticks']} ticks per model, float64 reference, seed {results['seed']}",
        "", table(headers, rows), "",
        "agree = agent-ticks whose actions equal the float64 reference's (previous actions",
        "  re-synchronised to the reference every tick, so each tick measures belief error alone)",
        f"near-tie = disagreements where the reference's action marginals differ by <= {NEAR_TIE}",
        "never = agents with no disagreement all episode; 1st (med) = median tick of the first",
        "  disagreement of the others",
        "KL = KL(float64 belief || quantized belief) per factor after each tick's round trip, nats",
        "B/agent = stored belief bytes per agent (float64 in brackets); enc/dec ns = per agent,",
        "  float32 beliefs (production dtype), one thread",
        f"{CONTROL} = control, not a codec: each entry times e^u, u uniform in +-step/2 of uint16",
        "  (the size of uint16's rounding, at random), renormalised",
    ])


def default_json_path(quick: bool) -> Path:
    """``perf/results/quantization[-quick]-<date>-<host>.json``."""
    date = datetime.date.today().isoformat()
    host = socket.gethostname().split(".")[0] or "host"
    return RESULTS_DIR / f"quantization{'-quick' if quick else ''}-{date}-{host}.json"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.quantization",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100-tick episodes")
    p.add_argument("--ticks", type=int, default=None, help="ticks per episode (default 1000)")
    p.add_argument("--agents", type=int, default=200, help="agents per population (200)")
    p.add_argument("--seed", type=int, default=0, help="agents' and world's seed (0)")
    p.add_argument("--timing-agents", type=int, default=50_000,
                   help="population the encode/decode times are measured on (50,000)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON (default perf/results/"
                        "quantization-<date>-<host>.json)")
    args = p.parse_args(argv)
    ticks = args.ticks if args.ticks is not None else (100 if args.quick else 1000)
    shown = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m perf.quantization", *shown])
    results = run(ticks, args.agents, args.seed, command, args.timing_agents)
    print(format_report(results))
    path = args.json or default_json_path(args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
