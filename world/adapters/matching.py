"""Checks that a generative model's modalities and control factors match a world's spaces."""

from __future__ import annotations

from collections.abc import Iterable

from engine.errors import WorldError
from engine.model.generative_model import GenerativeModel
from world.adapters.discrete_layout import DiscreteLayout


def controlled_factors(model: GenerativeModel, control_factors: Iterable[int] | None
                     ) -> tuple[int, ...]:
    factors = tuple(model.control_fac_idx if control_factors is None
                    else (int(f) for f in control_factors))
    for f in factors:
        if not 0 <= f < model.num_factors:
            raise WorldError(f"control factor {f} is not a factor of the model "
                             f"(it has {model.num_factors})")
    if len(set(factors)) != len(factors):
        raise WorldError(f"control_factors {list(factors)} repeats a factor")
    return factors


def check_observations_match(model: GenerativeModel, layout: DiscreteLayout, who: str) -> None:
    if layout.n_components != model.num_modalities:
        raise WorldError(f"the model has {model.num_modalities} modalities but {who} "
                         f"observation space {layout.space} has {layout.n_components} "
                         f"discrete components")
    for m, (o, k) in enumerate(zip(model.num_obs, layout.sizes, strict=True)):
        if o != k:
            part = f" (component {m} of {layout.space})" if layout.n_components > 1 else ""
            raise WorldError(f"modality {m} has {o} outcomes but {who} observation space "
                             f"has {k}{part}")


def check_actions_match(model: GenerativeModel, factors: tuple[int, ...],
                         layout: DiscreteLayout, who: str) -> None:
    if layout.n_components != len(factors):
        raise WorldError(f"the model has {len(factors)} control factors {list(factors)} but "
                         f"{who} action space {layout.space} has {layout.n_components} "
                         f"discrete components")
    for j, (f, k) in enumerate(zip(factors, layout.sizes, strict=True)):
        u = model.num_controls[f]
        if u != k:
            part = f" (component {j} of {layout.space})" if layout.n_components > 1 else ""
            raise WorldError(f"control factor {f} has {u} actions but {who} action space "
                             f"has {k}{part}")

