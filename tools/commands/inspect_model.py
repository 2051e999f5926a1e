"""``agentloop inspect-model``: a model's structure and the kernel paths chosen for it."""

from __future__ import annotations

import argparse
import sys

from tools.args import EXIT_CODES, EXIT_USAGE, positive_int
from tools.commands.run import WORLD_NAMES

EXIT_OK = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect-model`` subcommand to ``subparsers``, with :func:`main` as handler."""
    cmd = subparsers.add_parser(
        "inspect-model", help="show a model's structure and the kernel paths chosen for it",
        description="Print a generative model's factors, modalities and policies, the bytes "
                    "its kernel layout shares, and how the state information gain is computed "
                    "for it (sparse, dense or split) and why. The model comes from a .npz file "
                    "(GenerativeModel.save), a world, or a benchmark model.",
        epilog=EXIT_CODES)
    source = cmd.add_mutually_exclusive_group()
    source.add_argument("--model", metavar="PATH", help="a model saved with GenerativeModel.save")
    source.add_argument("--world", metavar="NAME",
                        help=f"a world's model: {', '.join(WORLD_NAMES)} (the default: grid)")
    source.add_argument("--bench", metavar="NAME",
                        help="a benchmark model by name (perf/models.py: grid-10, dense-grid-10, "
                             "tmaze, ...)")
    cmd.add_argument("--size", type=positive_int, default=10, help="world size; default 10")
    cmd.add_argument("--policy-len", type=positive_int, default=1,
                     help="planning horizon; default 1")
    cmd.add_argument("--semantics", default="pymdp0", choices=("pymdp0", "pymdp1"),
                     help="pymdp 0.0.7.1's joint-outcome information gain (default) or "
                          "pymdp 1.x's per-modality one")
    cmd.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Print the model's structure and its layout's paths."""
    from engine.errors import AgentloopError

    try:
        model = _load(args)
    except (AgentloopError, KeyError, OSError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"agentloop inspect-model: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    from engine import InferenceConfig
    from engine.model.layout import layout_of

    try:
        layout = layout_of(model, InferenceConfig(policy_len=args.policy_len,
                                                  semantics=args.semantics))
    except AgentloopError as exc:
        print(f"agentloop inspect-model: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in describe_layout(layout):
        print(line)
    return EXIT_OK


def describe_layout(layout) -> list[str]:  # noqa: ANN001
    """Lines that describe a :class:`~engine.model.layout.ModelLayout`."""
    from engine.kernels.numba.step import describe_walk  # noqa: PLC0415  (keeps --help fast)

    factors = ", ".join(f"{s} ({u} action{'s' if u != 1 else ''})"
                        for s, u in zip(layout.num_states, layout.num_controls, strict=True))
    sparse_b = ", ".join("sparse" if b else "dense" for b in layout.B_sparse)
    return [
        f"hidden factors: {factors}; {layout.n_joint} joint states; B {sparse_b}",
        f"modalities: {', '.join(str(o) for o in layout.num_obs)} outcomes; "
        f"{layout.n_joint_obs} joint outcomes",
        f"policies: {layout.n_policies} of length {layout.policy_len}; "
        f"{layout.tree.n_nodes} prefix-tree nodes",
        f"information gain: {layout.gain_path_reason()}",
        f"policy walk: {describe_walk(layout)}",
        f"shared layout: {layout.nbytes() / 1e6:.2f} MB",
    ]


def _load(args: argparse.Namespace):  # noqa: ANN202
    if args.model:
        from engine import GenerativeModel

        return GenerativeModel.load(args.model)
    if args.bench:
        from perf.models import model_by_name

        return model_by_name(args.bench)
    world = args.world or "grid"
    if world not in WORLD_NAMES:
        raise ValueError(f"unknown world {world!r}; choose from {', '.join(WORLD_NAMES)}")
    from world.registry import make_world

    return make_world(world, args.size, 1).model()
