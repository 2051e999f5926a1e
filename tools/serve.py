"""``agentloop serve``: build the engine ``run`` would build (world model, population, workers)
and serve it to one client in another process (:class:`engine.serve.server.Server`)."""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from typing import TextIO

import numpy as np

from engine.serve.janitor import Janitor
from engine.serve.layout import ABI_VERSION
from engine.serve.server import Server
from tools.progress import STARTING
from tools.run import EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, RunOptions, make_engine
from world.registry import make_world


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """What ``agentloop serve`` was asked to do (validated by the parser)."""

    run: RunOptions
    name: str
    budget_s: float | None = None
    attach_timeout_s: float | None = None
    client_timeout_s: float | None = None


def ready_line(server: Server) -> str:
    """The line a launcher waits for: the names to open and the region's shape."""
    names = server.names
    layout = server.layout
    return (f"agentloop serve: ready name={server.name} region={names['region']} "
            f"go={names['go']} done={names['done']} manifest={names['manifest']} "
            f"agents={layout.n_agents} modalities={layout.n_modalities} "
            f"factors={layout.n_factors} abi={ABI_VERSION}")


def serve(options: ServeOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Serve until the client detaches; returns the process exit code."""
    run = options.run
    size = run.size or (5 if run.world == "foraging" else 10)
    model = make_world(run.world, size, run.agents).model()
    workers = run.n_workers
    budget = "no budget" if options.budget_s is None else f"{1e3 * options.budget_s:g} ms budget"
    print(f"agentloop serve: {run.agents:,} agents in the {run.world} world (size {size}), "
          f"policy_len {run.policy_len}, {workers or 'no'} worker process"
          f"{'' if workers == 1 else 'es'}, {budget}, seed {run.seed}", file=out)
    print(STARTING, file=out, flush=True)
    started = time.monotonic()
    engine = make_engine(model, run.agents, cluster=None, shards=None, workers=workers,
                         config=run.inference_config(), seed=run.seed)
    # the janitor removes the engine's and the server's shared memory if this process dies
    with Janitor() as janitor, engine:
        janitor.watch(engine.run_id)
        engine.warm_up(np.zeros((run.agents, len(model.num_obs)), dtype=np.int64))
        with Server(engine, options.name, options.budget_s, options.attach_timeout_s,
                    options.client_timeout_s, janitor=janitor) as server:
            print(f"started in {time.monotonic() - started:.1f} s", file=out)
            print(ready_line(server), file=out, flush=True)
            outcome = server.serve()
    if outcome.signum == signal.SIGINT:
        print(f"agentloop serve: interrupted (SIGINT) after {outcome.ticks} ticks", file=err)
        return EXIT_SIGINT
    if outcome.signum is not None:
        print(f"agentloop serve: stopped by signal {outcome.signum} after {outcome.ticks} "
              f"ticks", file=err)
        return EXIT_SIGTERM if outcome.signum == signal.SIGTERM else 128 + outcome.signum
    print(f"agentloop serve: the client detached after {outcome.ticks} ticks", file=out)
    return EXIT_OK
