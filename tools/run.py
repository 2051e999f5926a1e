"""``agentloop run``: agents act in a world at a fixed tick rate, with a live status line.

The world (``world.registry``) provides the agents' generative model; an :class:`Engine` steps
them (in process for small populations, worker processes for large ones) and drives the world
at ``hz`` ticks per second. The status line is rewritten in place on a terminal and printed
about once a second otherwise; a summary closes the run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from engine import Engine, GenerativeModel, InferenceConfig, TickInfo
from engine.errors import AgentloopError
from engine.kernels.numba.step import describe_walk
from engine.model.layout import layout_of
from engine.runtime.engine import RunSummary
from engine.runtime.learnt_params import drift
from engine.runtime.sizing import (
    Footprint,
    agents_footprint,
    check_fits,
    estimate_footprint,
    learnt_bytes,
)
from engine.runtime.stale import describe
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.writer import MAX_HEADER_BYTES, TickLogWriter
from tools.progress import STARTING, StartupProgress
from tools.status_json import StatusJson
from world.base import World
from world.registry import make_world, model_shape

if TYPE_CHECKING:
    from engine.runtime.prometheus import MetricsEndpoint

#: populations at or above this size get worker processes when --workers is not given
WORKERS_FROM = 20_000
#: highest tick rate accepted (a 0.1 ms budget)
MAX_HZ = 10_000.0
#: most ticks in one run (tick numbers in a tick log stay below 2**32)
MAX_TICKS = 2**32 - 1
#: the engine's per-tick overhead with 0 agents, in process and with worker processes (p50,
#: rounded up from perf/RESULTS.md: 10-12 us and 60-147 us)
TICK_OVERHEAD_S = {"in process": 15e-6, "worker processes": 150e-6}
#: what a world holds per agent, at its peak during a step (78-106 bytes measured)
WORLD_BYTES_PER_AGENT = 128
#: records ``TickLogWriter`` queues before the caller waits (its ``queue_size``)
LOG_QUEUE = 32
#: exit codes of ``agentloop run`` (also in ``--help``)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What ``agentloop run`` was asked to do (already validated by the parser)."""

    world: str
    size: int | None
    agents: int
    hz: float
    ticks: int | None
    duration: float | None
    workers: int | None
    backend: str
    policy_len: int
    seed: int
    xp_kernel: str = "auto"
    log: str | None = None
    snapshot_every: int = 100
    overwrite: bool = False
    log_max_bytes: int | None = None
    log_rotate: int | None = None
    visual: bool = False
    visual_every: int = 1
    cluster: str | None = None
    shards: int | None = None
    status_every_s: float = 1.0
    status_json: str | None = None
    semantics: str = "pymdp0"
    learn: str = ""
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def inference_config(self) -> InferenceConfig:
        """The agents' :class:`InferenceConfig` (its generation's defaults otherwise)."""
        return InferenceConfig(policy_len=self.policy_len, semantics=self.semantics,  # type: ignore[arg-type]
                               learn_A="A" in self.learn, learn_B="B" in self.learn)

    @property
    def n_ticks(self) -> int:
        if self.ticks is not None:
            return self.ticks
        return max(1, math.ceil((self.duration or 10.0) * self.hz))

    @property
    def n_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        if self.backend in ("cupy", "xp-numpy"):
            return 0                        # the device population is stepped by the master
        return 0 if self.agents < WORKERS_FROM else min(2, os.cpu_count() or 1)


class StatusPrinter:
    """Prints the engine's status line plus the world's headline counts, rate-limited."""

    def __init__(self, engine: Engine, world: World, out: TextIO, every_s: float) -> None:
        self.engine, self.world, self.out = engine, world, out
        self.interactive = out.isatty()
        self.every_s = every_s
        self._next = 0.0
        self._printed = False
        self._shown_at = -1

    def __call__(self, info: TickInfo) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + (0.2 if self.interactive else self.every_s)
        self.show()

    def show(self) -> None:
        if self.engine.tick == self._shown_at:
            return                                   # this tick's line is already out
        self._shown_at = self.engine.tick
        line = (self.engine.metrics.status_line() + learning_counts(self.engine)
                + world_counts(self.world))
        if self.interactive:
            self.out.write("\r\x1b[2K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self._printed = True

    def finish(self) -> None:
        if self.interactive and self._printed:
            self.out.write("\n")
            self.out.flush()


def footprint_of(options: RunOptions, in_process: bool = False) -> Footprint:
    """The memory the run will take: its world's model (built, then copied into the model),
    the engine (:func:`engine.runtime.sizing.estimate_footprint`; remote on a cluster; with
    ``in_process``, :class:`Agents` stepped here, as ``demo`` does), the world's per-agent
    state, the per-tick records of the fixed-rate loop and the tick log's queue. ConfigError
    when the model or its policies are over the hard limits."""
    shape = model_shape(options.world, options.size or _default_size(options.world))
    config = options.inference_config()
    agents = options.agents if options.cluster is None else 0
    if in_process:
        footprint = agents_footprint(shape, config, agents)
    else:
        footprint = estimate_footprint(shape, config, agents, options.n_workers)
    per_tick = (len(shape.num_obs) + len(shape.num_states) + 1) * 8 * options.agents
    footprint = footprint.plus("the world's agents", WORLD_BYTES_PER_AGENT * options.agents)
    footprint = footprint.plus(f"{options.n_ticks:,} ticks' records", 16 * options.n_ticks)
    if options.log:
        footprint = footprint.plus("the tick log's queue", LOG_QUEUE * per_tick)
    return footprint


def request_problem(options: RunOptions, in_process: bool = False) -> str | None:
    """Why ``options`` cannot run on this machine, in one line naming the option: a rate or a
    tick count over the limits, too many policies, a model too large, or more memory than
    there is (:func:`footprint_of`, :func:`engine.runtime.sizing.check_fits`); None if it
    fits."""
    if options.hz > MAX_HZ:
        return (f"--hz {options.hz:g}: at most {MAX_HZ:g} ticks per second (a "
                f"{1e3 / MAX_HZ:g} ms budget)")
    if options.n_ticks > MAX_TICKS:
        given = (f"--ticks {options.ticks}" if options.ticks is not None else
                 f"--duration {options.duration:g} at --hz {options.hz:g} gives "
                 f"{options.n_ticks:.3g} ticks")
        return f"{given}: at most {MAX_TICKS:,} ticks in one run"
    size = options.size or _default_size(options.world)
    header = model_shape(options.world, size).model_bytes() * 4 // 3      # base64 in the header
    if options.log and header > MAX_HEADER_BYTES:
        return (f"--log {options.log}: the {options.world} world of size {size} has a model of "
                f"~{header / (1 << 20):,.1f} MB, more than a tick log carries "
                f"({MAX_HEADER_BYTES / (1 << 20):.1f} MB); log a smaller world")
    try:
        check_fits(footprint_of(options, in_process), f"{options.agents:,} agents in the "
                                          f"{options.world} world of size {size}")
    except AgentloopError as exc:
        text = str(exc)
        named = (f"--policy-len {options.policy_len}: " if "polic" in text else
                 f"--size {size}: " if "joint" in text else "")
        return named + text
    return None


def run_warnings(options: RunOptions, cores: int) -> list[str]:
    """What cannot work well in ``options`` on a machine of ``cores`` cores (the run goes on)."""
    found = []
    workers = options.n_workers
    if workers > cores:
        found.append(f"--workers {workers} on {cores} cores: more worker processes than cores "
                     f"slows every tick down")
    mode = "worker processes" if workers else "in process"
    overhead = TICK_OVERHEAD_S[mode]
    if 1.0 / options.hz < overhead:
        found.append(f"--hz {options.hz:g} leaves {1e3 / options.hz:.3g} ms a tick, less than "
                     f"the engine's own overhead ({1e6 * overhead:.0f} us a tick {mode}, "
                     f"measured with 0 agents): most ticks will be missed")
    return found


def world_stats(world: World) -> dict[str, Any]:
    """The world's own figures (``world.stats()``), empty for a world without them."""
    stats = getattr(world, "stats", None)
    return dict(stats()) if stats is not None else {}


def world_counts(world: World) -> str:
    """The world's headline figures for the status line (what the agents achieve)."""
    stats = getattr(world, "stats", None)
    if stats is None:
        return ""
    s = stats()
    n = max(1, int(s.get("n_agents", 1)))
    if "on_resource" in s:
        return f"  on resource {s['on_resource'] / n:6.1%}  harvested {s['harvested_total']:,}"
    if "on_food" in s:
        return f"  on food {s['on_food'] / n:6.1%}  context switches {s['switches_total']}"
    return ""


def run(options: RunOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the job ``options`` describes; returns the process exit code. ``out`` and ``err``
    default to the ``sys.stdout`` / ``sys.stderr`` of the call. With ``metrics_port``, the
    Prometheus endpoint listens before anything else starts (a port it cannot have is a usage
    error, exit 2) and closes with the run."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if options.metrics_port is None:
        return _run(options, out, err, None)
    try:
        from engine.runtime.prometheus import MetricsEndpoint
    except ImportError as exc:
        print(f"agentloop run: error: --metrics-port needs the prometheus-client package "
              f"(pip install prometheus-client): {exc}", file=err)
        return EXIT_FAILURE
    try:
        endpoint = MetricsEndpoint(port=options.metrics_port, host=options.metrics_host,
                                   hz=options.hz)
    except OSError as exc:
        reason = " ".join((exc.strerror or str(exc)).split())
        print(f"agentloop run: error: --metrics-port {options.metrics_port}: cannot listen "
              f"on {options.metrics_host}: {reason}", file=err)
        return EXIT_USAGE
    with endpoint:
        return _run(options, out, err, endpoint)


def _run(options: RunOptions, out: TextIO, err: TextIO,
         endpoint: MetricsEndpoint | None) -> int:
    world = make_world(options.world, options.size or _default_size(options.world),
                       options.agents)
    model = learnable(world.model(), options.learn)
    config = options.inference_config()
    workers = options.n_workers
    n_ticks = options.n_ticks
    size = world.config().get("size")
    where = "" if options.cluster is None else f" on the Ray cluster {options.cluster}"
    print(f"agentloop run: {options.agents:,} agents in the {options.world} world (size {size}), "
          f"policy_len {options.policy_len}, {_generation(options.semantics)}, backend "
          f"{options.backend}, {workers or 'no'} "
          f"worker process"
          f"{'' if workers == 1 else 'es'}{' per shard' if where else ''}, {n_ticks} ticks at "
          f"{options.hz:g} Hz{where}", file=out)
    print(footprint_of(options).line(), file=out)
    if endpoint is not None:
        print(f"metrics: {endpoint.url} (Prometheus)", file=out)
    if options.learn:
        print(f"learning {options.learn}: {learnt_bytes(model, config):,} bytes of parameters "
              f"per agent in shared memory", file=out)
    layout = layout_of(model, config)
    print(f"model: {layout.gain_path_reason()} (information gain)", file=out)
    print(f"policies: {describe_walk(layout)}", file=out)
    print(STARTING, file=out, flush=True)
    started = time.monotonic()
    device = ({} if options.backend == "numba"
              else {"backend": options.backend, "xp_kernel": options.xp_kernel})
    engine = make_engine(model, options.agents, cluster=options.cluster, shards=options.shards,
                         workers=workers, config=config, seed=options.seed, **device)
    recorder = None
    if options.log:
        recorder_class = TickRecorder if options.cluster is None else cluster_recorder()
        recorder = recorder_class(engine, options.log, hz=options.hz, world=world.config(),
                                  snapshot_every=options.snapshot_every,
                                  overwrite=options.overwrite, max_bytes=options.log_max_bytes,
                                  rotate=options.log_rotate,
                                  visual=world if options.visual else None,
                                  visual_every=options.visual_every)
    summary, error = None, None
    status_json: StatusJson | None = None
    progress = StartupProgress(out).start()      # the engine compiles as it starts
    try:
        with engine:
            warm = engine.warm_up(world.reset(engine.seed))
            progress.stop()
            print(f"ready in {time.monotonic() - started:.1f} s (warm-up {warm:.2f} s, before "
                  f"the clock starts)", file=out, flush=True)
            printer = StatusPrinter(engine, world, out, options.status_every_s)
            if options.status_json:
                status_json = StatusJson(options.status_json, engine)
            if endpoint is not None:
                endpoint.attach(engine)

            def on_tick(info: TickInfo) -> None:
                if recorder is not None:
                    recorder.record(info)
                if endpoint is not None:
                    endpoint.observe(info)
                printer(info)
                if status_json is not None:
                    status_json(world_stats(world))

            summary = engine.run(world, options.hz, n_ticks, on_tick=on_tick,
                                 raise_on_signal=False)
            printer.show()
            printer.finish()
            if status_json is not None:
                status_json.write(world_stats(world))
            signum = engine.stop_requested
            print_summary(summary, engine, world, out)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        progress.stop()
        if status_json is not None:
            status_json.close()
        if recorder is not None:
            recorder.close(summary, error=error)
    lost = recorder is not None and not log_report(recorder.writer, out, err)
    if signum == signal.SIGINT:
        print("agentloop run: interrupted (SIGINT) after the current tick", file=err)
        return EXIT_SIGINT
    if signum is not None:
        print(f"agentloop run: stopped by signal {signum} after the current tick", file=err)
        return EXIT_SIGTERM if signum == signal.SIGTERM else 128 + int(signum)
    return EXIT_FAILURE if lost else EXIT_OK


def log_report(writer: TickLogWriter, out: TextIO, err: TextIO, command: str = "run") -> bool:
    """Print where the tick log is and how to replay it, or (on ``err``) that a file of it
    was removed or replaced while the run wrote it; whether the log is whole."""
    lost = writer.lost_files()
    if lost:
        which = "" if lost == [writer.path] else f": {lost[0]}" + (
            f" and {len(lost) - 1} more of its files" if len(lost) > 1 else "")
        print(f"agentloop {command}: error: tick log {writer.path}{which} was removed or "
              f"replaced during the run", file=err)
        return False
    stats = writer.stats
    files = ""
    if stats["files_written"] > 1:
        kept = writer.files
        span = kept[0] if len(kept) == 1 else f"{kept[0]} .. {kept[-1]}"
        files = (f" in {stats['files_written']:.0f} files: {span}"
                 + (f", the {stats['files_removed']:.0f} oldest removed (--log-rotate)"
                    if stats["files_removed"] else ""))
    print(f"tick log: {writer.path} ({stats['ticks_written']:.0f} ticks{files}; replay with: "
          f"agentloop replay {writer.path})", file=out)
    return True


#: agents sampled for the status line's learning figure
DRIFT_SAMPLE = 1024


def learning_counts(engine: Engine) -> str:
    """The status line's learning figure: mean KL of the agents' learnt A and B (their
    Dirichlet counts' expected distributions) from the priors, over a sample of agents."""
    state = getattr(engine, "state", None)
    if getattr(state, "params", None) is None or not hasattr(engine, "checkers"):
        return ""
    layout = engine.checkers[0].layout
    params = state.params
    rows = slice(0, min(DRIFT_SAMPLE, state.spec.n_agents))
    parts = []
    if params.spec.learn_A:
        kl = drift(params.full("pA", rows), params.base["pA"], layout.A_offset, layout.num_obs)
        parts.append(f"KL(pA) {kl:.3g}")
    if params.spec.learn_B:
        kl = drift(params.full("pBt", rows), params.base["pBt"], layout.B_offset,
                   -layout.num_states)
        parts.append(f"KL(pB) {kl:.3g}")
    return "  " + " ".join(parts)


def learnable(model: GenerativeModel, learn: str) -> GenerativeModel:
    """``model`` with the Dirichlet priors ``--learn`` needs that it lacks: like its A / B,
    concentration 1 (pymdp's ``dirichlet_like``)."""
    return model.with_priors(pA_scale=1.0 if "A" in learn and model.pA is None else None,
                             pB_scale=1.0 if "B" in learn and model.pB is None else None)


def make_engine(model: GenerativeModel, n_agents: int, *, cluster: str | None,
                shards: int | None, **kwargs: Any) -> Engine:
    """A local :class:`Engine`, or one spread over the Ray cluster at ``cluster``."""
    if cluster is None:
        return Engine(model, n_agents, **kwargs)
    from engine.factory import make_engine as make_cluster_engine

    return make_cluster_engine(model, n_agents, cluster=cluster, shards=shards, **kwargs)


def cluster_recorder() -> type[TickRecorder]:
    from engine.cluster.recorder import ClusterRecorder

    return ClusterRecorder


def _default_size(world: str) -> int:
    return 5 if world == "foraging" else 10


def print_summary(summary: RunSummary, engine: Engine, world: World, out: TextIO) -> None:
    """The closing lines: ticks, timing, misses, degradation, stale agent-ticks by reason,
    throughput, what agents did."""
    snap = engine.metrics.snapshot()
    levels = ", ".join(f"{k}:{v}" for k, v in enumerate(summary.level_counts) if v)
    print(f"summary: {summary.ticks} ticks at {summary.hz:g} Hz"
          f"{' (interrupted)' if summary.interrupted else ''}; tick p50 "
          f"{1e3 * summary.tick_s_p50:.2f} ms, p99 {1e3 * summary.tick_s_p99:.2f} ms "
          f"(budget {1e3 / summary.hz:.1f} ms); missed {summary.missed}, late slots "
          f"{summary.late_slots}, dropped slots {summary.dropped_slots}; levels {levels or '-'}; "
          f"{describe(summary.stale_agent_ticks, summary.ticks * engine.n_agents)} of "
          f"agent-ticks; {snap.agents_per_s:,.0f} agent-steps/s; RSS {snap.rss_mb:.0f} MB",
          file=out)
    counts = world_counts(world).strip()
    if counts:
        print(f"world: {counts}", file=out)


def _generation(semantics: str) -> str:
    return "pymdp 1.x semantics" if semantics == "pymdp1" else "pymdp 0.0.7.1 semantics"
