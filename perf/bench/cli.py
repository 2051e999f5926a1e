"""The command line of ``python -m perf`` and ``agentloop bench``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perf.bench.compare import compare, format_comparison
from perf.bench.config import (
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    FULL,
    PLOTS_DIR,
    QUICK,
    README_MD,
    RESULTS_DIR,
    RESULTS_MD,
    STAGES,
    BenchConfig,
)
from perf.bench.figures import validate_results
from perf.bench.plots import write_plots
from perf.bench.readme import readme_table, results_md_section, write_results_md
from perf.bench.report import format_report
from perf.bench.runner import run
from tools.args import OneLineParser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got "
                                         f"{text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 0, got "
                                         f"{text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


DESCRIPTION = ("The benchmark report: agentloop against pymdp 0.0.7.1 and pymdp 1.x, measured side "
               "by side in one run.")
EPILOG = ("exit codes: 0 done (no regression); 1 --compare found a figure more than 10% worse, "
          "or the run failed; 2 bad command line or unreadable --compare file")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="grid-10 at policy_len 1, up to 10,000 agents, the zoo's dense-grid-10 "
                        "with 1,000 agents, 2 repeats, shorter searches (about 2 minutes)")
    p.add_argument("--compare", metavar="OLD.json", default=None,
                   help="after the run, flag every agentloop figure more than 10%% worse than "
                        "in OLD.json (in its ratio to pymdp 0.0.7.1 measured in the same run); "
                        "exit 1 if any")
    p.add_argument("--against", metavar="NEW.json", default=None,
                   help="with --compare: compare NEW.json to OLD.json without running")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="where to write the results (default perf/results/<date>-<host>.json, "
                        "-quick added for --quick)")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help="alternating repeats of each measurement (default 3; --quick 2)")
    p.add_argument("--models", default=None,
                   help="comma-separated models (perf.models) for the latency figures and the "
                        "zoo stage (default: latency on grid-5,grid-10,grid-20,multi-3x3; the "
                        "zoo on every zoo model)")
    p.add_argument("--zoo-models", default=None,
                   help="comma-separated models for the zoo stage only (overrides --models "
                        "there; default every zoo model)")
    p.add_argument("--policy-lens", type=_int_list, default=None,
                   help="comma-separated policy lengths (default 1,3; in the zoo, each "
                        "model's own: epistemic-chain 4)")
    p.add_argument("--zoo-agents", type=_int_list, default=None, metavar="N[,M]",
                   help="agents per zoo model: N, and M at policy_len >= 3 (default "
                        "10000,1000)")
    p.add_argument("--sizes", type=_int_list, default=None,
                   help="comma-separated populations of the throughput curve "
                        "(default 1,100,10000,100000,1000000)")
    p.add_argument("--workers", type=_int_list, default=None,
                   help="comma-separated engine worker counts (default 0,1,2)")
    p.add_argument("--stages", default=None,
                   help=f"comma-separated stages to run (default all: {', '.join(STAGES)}); "
                        "the machine probes always run")
    p.add_argument("--no-pymdp", action="store_true", help="skip pymdp 0.0.7.1 (no ratios)")
    p.add_argument("--no-pymdp1", action="store_true", help="skip pymdp 1.x (JAX)")
    p.add_argument("--no-install", action="store_true",
                   help="do not create pymdp 1.x's venv (in ~/.cache/agentloop) when it is missing")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--update-md", action=argparse.BooleanOptionalAction, default=None,
                   help="regenerate the bench section of perf/RESULTS.md (default: on for a "
                        "full run, off for --quick)")
    p.add_argument("--results-md", metavar="PATH", default=None,
                   help="the Markdown file whose bench section is regenerated "
                        "(default perf/RESULTS.md)")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand to ``subparsers``; dispatch it to :func:`main_bench`."""
    bench = subparsers.add_parser(
        "bench", help="the benchmark report: agentloop against pymdp 0.0.7.1 and 1.x",
        description=DESCRIPTION + " Measures step latency, throughput against "
        "population, the largest population held at 10/30/60 Hz, memory per agent, start-up, "
        "quantization error and the share of the machine's FLOP and bandwidth limits, each "
        "as a ratio to pymdp 0.0.7.1 measured in the same run; writes JSON, PNG plots and "
        "the bench section of perf/RESULTS.md.", epilog=EPILOG)
    _add_arguments(bench)


def build_parser(prog: str = "python -m perf") -> argparse.ArgumentParser:
    """The stand-alone parser of ``python -m perf``."""
    p = OneLineParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    _add_arguments(p)
    return p


def _models(option: str, text: str) -> tuple[str, ...]:
    """The model names of ``option`` (``ValueError`` naming an unknown one)."""
    from perf.models import MODELS

    models = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"{option}: unknown model {', '.join(unknown) or '(none)'}; "
                         f"known: {', '.join(MODELS)}")
    return models


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` the arguments ask for (``ValueError`` with a one-line reason)."""
    cfg = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.repeats is not None:
        changes["repeats"] = args.repeats
    if args.models:
        models = _models("--models", args.models)
        changes["latency_models"] = models
        changes["zoo_models"] = models
    if args.zoo_models:
        changes["zoo_models"] = _models("--zoo-models", args.zoo_models)
    if args.policy_lens:
        if any(v < 1 for v in args.policy_lens):
            raise ValueError("--policy-lens: each must be at least 1")
        changes["policy_lens"] = args.policy_lens
        changes["zoo_policy_lens"] = args.policy_lens
    if args.zoo_agents:
        if len(args.zoo_agents) > 2 or any(v < 1 for v in args.zoo_agents):
            raise ValueError("--zoo-agents: one or two counts, each at least 1")
        changes["zoo_agents"] = args.zoo_agents[0]
        changes["zoo_agents_long"] = args.zoo_agents[-1]
    if args.sizes:
        if any(v < 1 for v in args.sizes):
            raise ValueError("--sizes: each must be at least 1")
        changes["sizes"] = tuple(sorted(set(args.sizes)))
    if args.workers:
        changes["workers"] = args.workers
    if args.stages:
        stages = tuple(x.strip() for x in args.stages.split(",") if x.strip())
        unknown = [x for x in stages if x not in STAGES]
        if unknown or not stages:
            raise ValueError(f"--stages: unknown stage {', '.join(unknown) or '(none)'}; "
                             f"known: {', '.join(STAGES)}")
        changes["stages"] = stages
    if args.no_pymdp:
        changes["pymdp"] = False
    if args.no_pymdp1:
        changes["pymdp1"] = False
    if args.no_install:
        changes["install_pymdp1"] = False
    return dataclasses.replace(cfg, **changes)


def default_json_path(quick: bool) -> Path:
    """``perf/results/<date>-<host>[-quick].json``."""
    host = socket.gethostname().split(".")[0] or "host"
    return RESULTS_DIR / f"{datetime.date.today().isoformat()}-{host}" \
                         f"{'-quick' if quick else ''}.json"


def _load(path: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {path}: {' '.join(str(exc).split())}") from None
    problems = validate_results(data)
    if problems:
        raise ValueError(f"{what} {path} is not a bench report: {problems[0]}")
    return data


def _command(prog: str, argv: Sequence[str] | None) -> str:
    if argv is not None:
        return " ".join([prog, *argv])
    if prog == "agentloop bench":
        return " ".join(["agentloop", *sys.argv[1:]])
    return " ".join([prog, *sys.argv[1:]])


def main_bench(args: argparse.Namespace, prog: str = "agentloop bench",
               argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or only ``--compare``) for parsed ``args``; the exit code.

    ``prog`` names the command in messages; ``argv`` (default ``sys.argv``) is recorded as the
    command that produced the results."""
    def usage(message: str) -> int:
        print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE

    if args.against and not args.compare:
        return usage("--against needs --compare OLD.json")
    try:
        cfg = config_from_args(args)
        old = _load(args.compare, "--compare") if args.compare else None
        if args.against:
            assert old is not None
            new = _load(args.against, "--against")
            print(format_comparison(compare(old, new), args.compare))
            return EXIT_REGRESSION if compare(old, new)["regressions"] else EXIT_OK
    except ValueError as exc:
        return usage(str(exc))
    json_path = Path(args.json) if args.json else default_json_path(args.quick)
    for path in (json_path, Path(args.results_md) if args.results_md else None):
        if path is not None and not path.parent.is_dir():
            return usage(f"{path}: the directory {path.parent} does not exist")
    command = _command(prog, argv)
    try:
        results = run(cfg, command)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if not args.no_plots:
        stem = json_path.stem
        results["plots"] = write_plots(results, PLOTS_DIR if not args.json
                                       else json_path.parent / "plots", stem)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1))
    print(format_report(results))
    print(f"\nwrote {json_path}", file=sys.stderr)
    update_md = (not args.quick) if args.update_md is None else args.update_md
    if update_md:
        md = Path(args.results_md) if args.results_md else RESULTS_MD
        write_results_md(md, results_md_section(results, str(json_path)))
        print(f"regenerated the bench section of {md}", file=sys.stderr)
        if not args.results_md:
            write_results_md(README_MD, readme_table(results))
            print(f"regenerated the results table of {README_MD}", file=sys.stderr)
    if old is not None:
        cmp = compare(old, results)
        print("\n" + format_comparison(cmp, args.compare))
        return EXIT_REGRESSION if cmp["regressions"] else EXIT_OK
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perf``."""
    args = build_parser().parse_args(argv)
    return main_bench(args, prog="python -m perf", argv=argv)
