"""The grid world: many agents on one N x N grid with walls, hazards, goals and depleting resources.

Cells are empty ``.``, wall ``#``, goal ``G``, hazard ``H`` or resource ``R``; layouts are lists of
N strings (``"default"``, ``"open"`` and ``"random"`` name built-in ones). The agents' model
(:func:`layout_model`) is ``grid_model(N)`` with the layout's walls and resource cue. The order
of a tick (moves and collisions, energy, harvest, regrowth, respawn, observation) and the reset
rules are in docs/architecture.md ("world.grid"). Same seed and actions, same observations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import WorldError
from engine.model.generative_model import GenerativeModel
from engine.runtime.sizing import ModelShape
from world.base import check_actions
from world.kernels import drain, finished, grid_targets, refuse_over_capacity
from world.models import (
    CUE_NEAR,
    CUE_ON,
    MOVES,
    grid_position_likelihood,
    grid_resource_cell,
)
from world.process import ModeFirstSampler

EMPTY, WALL, GOAL, HAZARD, RESOURCE = 0, 1, 2, 3, 4
CELL_CHARS = ".#GHR"
#: Manhattan distance within which the cue says "near" a resource.
NEAR_DISTANCE = 2
#: Default capacity is this many times the mean number of agents per open cell.
CAPACITY_FACTOR = 4


# ----------------------------------------------------------------------------------- layouts
def open_layout(size: int) -> list[str]:
    """No walls, hazards or goals; one resource where ``grid_model(size)`` expects it."""
    rows = [["."] * size for _ in range(size)]
    rr, rc = grid_resource_cell(size)
    rows[rr][rc] = "R"
    return ["".join(r) for r in rows]


def default_layout(size: int) -> list[str]:
    """The default layout: the resource of ``grid_model(size)`` at (3N/4, 3N/4); from N = 5 a
    goal in the top-left corner and a hazard at (3N/4, N/4); from N = 6 a second resource at
    (N/4, 3N/4) and a wall down column N/2 over rows N/4..N/2 (the grid stays connected)."""
    rows = [list(r) for r in open_layout(size)]
    q, h, tq = size // 4, size // 2, (3 * size) // 4
    if size >= 5:
        rows[0][0] = "G"
        rows[tq][q] = "H"
    if size >= 6:
        rows[q][tq] = "R"
        for r in range(q, h + 1):
            rows[r][h] = "#"
    return ["".join(r) for r in rows]


def random_layout(size: int, seed: int, wall_density: float = 0.15,
                  hazard_density: float = 0.03, n_resources: int = 2) -> list[str]:
    """A seeded random layout: walls, hazards, ``n_resources`` resources and one goal, redrawn
    until the open cells are connected and at least half of them are empty."""
    rng = np.random.default_rng(seed)
    n = size * size
    for _ in range(1000):
        kinds = np.full(n, EMPTY, dtype=np.int8)
        cells = rng.permutation(n)
        n_walls = int(round(wall_density * n))
        n_hazards = int(round(hazard_density * n))
        specials = [(WALL, n_walls), (RESOURCE, n_resources), (GOAL, 1), (HAZARD, n_hazards)]
        start = 0
        for kind, count in specials:
            kinds[cells[start:start + count]] = kind
            start += count
        grid = kinds.reshape(size, size)
        if (grid == EMPTY).sum() * 2 >= (grid != WALL).sum() and _connected(grid):
            return _to_rows(grid)
    raise WorldError(f"random_layout: no connected layout of size {size} with wall density "
                     f"{wall_density} in 1000 draws")


def parse_layout(rows: Sequence[str], size: int) -> np.ndarray:
    """A layout's rows as an ``(size, size)`` int8 array of cell kinds; WorldError if malformed."""
    if isinstance(rows, str) or len(rows) != size:
        raise WorldError(f"layout must be {size} strings of {size} characters, got {rows!r}")
    kinds = np.empty((size, size), dtype=np.int8)
    for r, row in enumerate(rows):
        if not isinstance(row, str) or len(row) != size:
            raise WorldError(f"layout row {r} must be a string of {size} characters, got {row!r}")
        for c, ch in enumerate(row):
            if ch not in CELL_CHARS:
                raise WorldError(f"layout row {r} column {c}: unknown cell {ch!r}; use "
                                 f"'.' empty, '#' wall, 'G' goal, 'H' hazard, 'R' resource")
            kinds[r, c] = CELL_CHARS.index(ch)
    if not (kinds == EMPTY).any():
        raise WorldError("layout has no empty cell for agents to (re)spawn on")
    return kinds


def resolve_layout(layout: str | Sequence[str], size: int, layout_seed: int) -> list[str]:
    """The rows of a named layout (``"default"``, ``"open"``, ``"random"``) or of given rows."""
    if isinstance(layout, str):
        if layout == "default":
            return default_layout(size)
        if layout == "open":
            return open_layout(size)
        if layout == "random":
            return random_layout(size, layout_seed)
        raise WorldError(f"unknown layout {layout!r}; choose from default, open, random, "
                         f"or give {size} rows")
    return [str(r) for r in layout]


def _to_rows(kinds: np.ndarray) -> list[str]:
    return ["".join(CELL_CHARS[k] for k in row) for row in kinds]


def _connected(kinds: np.ndarray) -> bool:
    """Whether the non-wall cells form one 4-connected region."""
    size = kinds.shape[0]
    moves = move_table(kinds)
    open_cells = np.flatnonzero(kinds.ravel() != WALL)
    seen = np.zeros(size * size, dtype=bool)
    seen[open_cells[0]] = True
    frontier = [int(open_cells[0])]
    while frontier:
        nxt = np.unique(moves[frontier].ravel())
        nxt = nxt[~seen[nxt]]
        seen[nxt] = True
        frontier = nxt.tolist()
    return bool(seen[open_cells].all())


# ------------------------------------------------------------------------------------- model
def move_table(kinds: np.ndarray) -> np.ndarray:
    """``(N*N, 5)`` int64: the cell each action leads to; off the grid or into a wall stays."""
    size = kinds.shape[0]
    table = np.empty((size * size, len(MOVES)), dtype=np.int64)
    for row in range(size):
        for col in range(size):
            for u, (dr, dc) in enumerate(MOVES):
                r2, c2 = row + dr, col + dc
                if not (0 <= r2 < size and 0 <= c2 < size) or kinds[r2, c2] == WALL:
                    r2, c2 = row, col
                table[row * size + col, u] = r2 * size + c2
    return table


def cue_likelihood(kinds: np.ndarray, reliability: float = 0.9) -> np.ndarray:
    """``(3, N*N)`` p(cue | cell): on a resource cell, within distance 2 of one, or neither."""
    size = kinds.shape[0]
    rows, cols = np.divmod(np.arange(size * size), size)
    res_r, res_c = np.nonzero(kinds == RESOURCE)
    cue = np.zeros(size * size, dtype=np.int64)
    if res_r.size:
        dist = (np.abs(rows[:, None] - res_r) + np.abs(cols[:, None] - res_c)).min(axis=1)
        cue = np.where(dist == 0, CUE_ON, np.where(dist <= NEAR_DISTANCE, CUE_NEAR, 0))
    A = np.full((3, size * size), (1.0 - reliability) / 2.0)
    A[cue, np.arange(size * size)] = reliability
    return A


def layout_model(kinds: np.ndarray, noise: float = 0.1,
                 cue_reliability: float = 0.9) -> GenerativeModel:
    """The agents' model of a layout: ``grid_model`` with walls in B and the layout's cue.

    One factor (cell, S = N*N), five actions; modalities: noisy position (``O = N*N``) and the
    resource cue (none/near/on); C prefers "on" (0, 1, 4); D is uniform over non-wall cells.
    """
    n_cells = kinds.size
    table = move_table(kinds)
    B = np.zeros((n_cells, n_cells, len(MOVES)))
    for u in range(len(MOVES)):
        B[table[:, u], np.arange(n_cells), u] = 1.0
    open_cells = (kinds.ravel() != WALL).astype(np.float64)
    A = [grid_position_likelihood(kinds.shape[0], noise), cue_likelihood(kinds, cue_reliability)]
    C = [np.zeros(n_cells), np.array([0.0, 1.0, 4.0])]
    return GenerativeModel(A=A, B=[B], C=C, D=[open_cells / open_cells.sum()])


# ----------------------------------------------------------------------------- vector helpers
def rotated(agents: np.ndarray, offset: int) -> np.ndarray:
    """Ascending agent indices reordered to start at the first index >= ``offset`` and wrap."""
    split = int(np.searchsorted(agents, offset))
    return np.concatenate((agents[split:], agents[:split]))


def rank_in_group(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """For each entry, how many earlier entries share its group (0 for the first of a group)."""
    key = groups.astype(np.uint16) if n_groups <= 1 << 16 else groups
    order = np.argsort(key, kind="stable")      # radix sort for 16-bit keys: O(n)
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    ranks = np.empty(groups.size, dtype=np.int64)
    ranks[order] = np.arange(groups.size) - starts[groups[order]]
    return ranks


def read_only(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


def check_param(owner: str, name: str, value: Any, low: float, high: float | None = None,
                integer: bool = False, high_open: bool = False) -> None:
    """WorldError naming ``owner`` and ``name`` unless ``value`` is a number (an int when
    ``integer``) in ``[low, high]`` (``[low, high)`` when ``high_open``)."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        what = "an int" if integer else "a number"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise WorldError(f"{owner}: {name} must be {what} >= {low}{hi}, got {value!r}")


# ------------------------------------------------------------------------------------- world
class AgentCells:
    """Inspection of agents that live on the cells of a ``size`` x ``size`` grid (``_cell``
    holds each agent's cell ``row * size + col``; ``_tick`` the ticks since reset)."""

    size: int
    _cell: np.ndarray
    _tick: int

    @property
    def tick(self) -> int:
        """Ticks stepped since the last reset."""
        return self._tick

    @property
    def cells(self) -> np.ndarray:
        """Each agent's true cell ``row * size + col`` (read-only view, ``(n_agents,)``)."""
        return read_only(self._cell)

    @property
    def positions(self) -> np.ndarray:
        """Each agent's true (row, col), ``(n_agents, 2)`` int64 (a copy)."""
        return np.stack(np.divmod(self._cell, self.size), axis=1)

    def occupancy(self) -> np.ndarray:
        """Agents per cell, ``(size, size)`` int64."""
        return np.bincount(self._cell, minlength=self.size * self.size).reshape(self.size,
                                                                               self.size)

    def grid_layers(self) -> dict[str, np.ndarray]:
        """The cells as ``(size, size)`` layers for a picture of the world (a tick log's
        ``/world/grid``, ``agentloop run --visual``): ``agents`` per cell first."""
        return {"agents": self.occupancy()}


class GridWorld(AgentCells):
    """Many agents sharing an N x N grid: walls, hazards, goals, depleting resources, energy.

    The rules (collisions, energy, harvest, regrowth, respawn) are in this module's docstring.
    Observations are int64 ``(n_agents, 2)``: observed cell (``row * size + col``) and resource
    cue (0 none, 1 near, 2 on); actions ``(n_agents, 1)`` in stay, up, down, left, right.

    Args:
        size: grid side N (>= 2).
        n_agents: number of agents (>= 1).
        layout: ``"default"``, ``"open"``, ``"random"`` or N strings over ``.#GHR``.
        layout_seed: seed of the ``"random"`` layout.
        capacity: most agents per cell; ``None``: ``CAPACITY_FACTOR`` times the mean number of
            agents per open cell (at least enough to seat everyone on the empty cells).
        noise: probability that the observed cell is a neighbour of the true one.
        cue_reliability: probability that the resource cue is the true one.
        max_energy: energy at respawn and the cap on harvesting.
        drain: energy lost by every agent every tick.
        hazard_cost: extra energy lost by an agent on a hazard.
        harvest_energy: energy one harvested unit gives.
        stock_max: most units a resource cell holds (it starts full).
        regrow: units a resource cell regrows per tick.
        seed: seed of the first episode (``reset(seed)`` starts another).
    """

    name = "grid"

    def __init__(self, size: int = 10, n_agents: int = 1000, *,
                 layout: str | Sequence[str] = "default", layout_seed: int = 0,
                 capacity: int | None = None, noise: float = 0.1, cue_reliability: float = 0.9,
                 max_energy: int = 100, drain: int = 1, hazard_cost: int = 10,
                 harvest_energy: int = 10, stock_max: float = 20.0, regrow: float = 1.0,
                 seed: int = 0) -> None:
        check = functools.partial(check_param, "GridWorld")
        check("size", size, 2, integer=True)
        check("n_agents", n_agents, 1, integer=True)
        if capacity is not None:
            check("capacity", capacity, 1, integer=True)
        check("noise", noise, 0.0, 1.0, high_open=True)
        check("cue_reliability", cue_reliability, 0.0, 1.0)
        check("max_energy", max_energy, 1, integer=True)
        for name, value in (("drain", drain), ("hazard_cost", hazard_cost),
                            ("harvest_energy", harvest_energy)):
            check(name, value, 0, integer=True)
        check("stock_max", stock_max, 0.0)
        check("regrow", regrow, 0.0)
        check("layout_seed", layout_seed, 0, integer=True)
        check("seed", seed, 0, integer=True)
        self.size, self.n_agents = int(size), int(n_agents)
        self.layout_rows = resolve_layout(layout, self.size, int(layout_seed))
        self.kinds = read_only(parse_layout(self.layout_rows, self.size))
        self._params: dict[str, Any] = dict(
            layout_seed=int(layout_seed),
            capacity=None if capacity is None else int(capacity), noise=float(noise),
            cue_reliability=float(cue_reliability), max_energy=int(max_energy),
            drain=int(drain), hazard_cost=int(hazard_cost), harvest_energy=int(harvest_energy),
            stock_max=float(stock_max), regrow=float(regrow))
        self._build_tables()
        self.capacity = self._resolve_capacity(capacity)
        self._model = layout_model(np.asarray(self.kinds), float(noise), float(cue_reliability))
        self._samplers = [ModeFirstSampler(a) for a in self._model.A]
        self.reset(int(seed))

    @staticmethod
    def model_shape(size: int) -> ModelShape:
        """The sizes of the model a grid of side ``size`` gives its agents (:func:`layout_model`),
        without building it: one factor of ``size**2`` cells, five moves, the position (at most
        five cells per column) and cue modalities."""
        cells = int(size) * int(size)
        return ModelShape((cells,), (cells, 3), (len(MOVES),), ((0,), (0,)), (0,),
                          B_nonzeros=cells * len(MOVES), po_nonzeros=cells * 5 * 3, built=False)

    # ------------------------------------------------------------------------ construction
    def _build_tables(self) -> None:
        flat = np.asarray(self.kinds).ravel()
        self.n_cells = flat.size
        self._moves = move_table(np.asarray(self.kinds)).ravel()     # [cell * 5 + action]
        self._spawn = np.flatnonzero(flat == EMPTY)
        self._resources = np.flatnonzero(flat == RESOURCE)
        self._res_index = np.full(self.n_cells, -1, dtype=np.int64)
        self._res_index[self._resources] = np.arange(self._resources.size)
        self._on_resource = flat == RESOURCE
        self._on_goal = flat == GOAL
        self._on_hazard = flat == HAZARD
        p = self._params
        self._cost = (p["drain"] + p["hazard_cost"] * self._on_hazard).astype(np.int32)
        self._has_goals = bool(self._on_goal.any())
        self._scratch = np.empty(0, dtype=np.int64)     # agent indices, reused every step

    def _resolve_capacity(self, capacity: int | None) -> int:
        n_open = int((np.asarray(self.kinds) != WALL).sum())
        n_spawn = self._spawn.size
        if capacity is None:
            capacity = max(math.ceil(CAPACITY_FACTOR * self.n_agents / n_open),
                           math.ceil(self.n_agents / n_spawn))
        if capacity * n_spawn < self.n_agents:
            raise WorldError(f"GridWorld: {self.n_agents} agents do not fit on the {n_spawn} "
                             f"empty cells at capacity {capacity}")
        return min(int(capacity), self.n_agents)   # more places than agents changes nothing

    # ---------------------------------------------------------------------------- protocol
    @property
    def observation_spec(self) -> tuple[int, ...]:
        """(cells, 3): observed cell and resource cue."""
        return (self.n_cells, 3)

    @property
    def action_spec(self) -> tuple[int, ...]:
        """(5,): stay, up, down, left, right."""
        return (len(MOVES),)

    def model(self) -> GenerativeModel:
        """The agents' generative model of this layout (:func:`layout_model`)."""
        return self._model

    def config(self) -> dict[str, Any]:
        """JSON-ready parameters that rebuild this world (``layout`` as its rows)."""
        return {"name": self.name, "size": self.size, "n_agents": self.n_agents,
                "layout": list(self.layout_rows), **self._params, "seed": self.seed}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Place agents, fill resources, zero counters; the first observations."""
        self.seed = self.seed if seed is None else int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._cell = np.empty(self.n_agents, dtype=np.int64)
        self._place(np.arange(self.n_agents), np.zeros(self.n_cells, dtype=np.int64))
        top = self._params["max_energy"]
        self._energy = self._rng.integers(top // 2, top + 1, size=self.n_agents,
                                          dtype=np.int32)
        np.maximum(self._energy, 1, out=self._energy)
        self._stock = np.full(self._resources.size, self._params["stock_max"])
        self._tick = 0
        self._last = dict(on_resource=0, harvested=0, collisions=0, blocked_by_wall=0,
                          deaths=0, goals=0)
        self._totals = dict(harvested=0, collisions=0, deaths=0, goals=0)
        return self._observe()

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply one action per agent (``(n_agents, 1)``); the next observations."""
        acts = check_actions(actions, self.n_agents, self.action_spec)[:, 0]
        offset = int(self._rng.integers(self.n_agents))
        self._tick += 1
        self._move(acts, offset)
        if self._scratch.shape[0] != self.n_agents:
            self._scratch = np.empty(self.n_agents, dtype=np.int64)
        n_on = drain(self._cell, self._cost, self._energy, self._on_resource, self._scratch)
        self._harvest(self._scratch[:n_on].copy(), offset)
        np.minimum(self._stock + self._params["regrow"], self._params["stock_max"],
                   out=self._stock)
        self._respawn_finished()
        for key in self._totals:
            self._totals[key] += self._last[key]
        return self._observe()

    # ------------------------------------------------------------------------------- rules
    def _move(self, acts: np.ndarray, offset: int) -> None:
        cell = self._cell
        target = np.empty_like(cell)
        occupancy = np.empty(self.n_cells, dtype=np.int64)
        demand = np.empty(self.n_cells, dtype=np.int64)
        n_moving = grid_targets(cell, acts, self._moves, len(MOVES), target, occupancy, demand)
        self._last["blocked_by_wall"] = int(np.count_nonzero(acts)) - n_moving
        collisions = 0
        if self.capacity < self.n_agents and n_moving:
            room = np.maximum(self.capacity - occupancy, 0)
            contested = demand > room
            if contested.any():
                collisions = refuse_over_capacity(cell, target, room, contested, offset)
        self._last["collisions"] = collisions
        self._cell = target

    def _harvest(self, on: np.ndarray, offset: int) -> None:
        """The agents ``on`` a resource cell (ascending) harvest in turn from ``offset``."""
        self._last["on_resource"] = on.size
        self._last["harvested"] = 0
        if on.size == 0:
            return
        on = rotated(on, offset)
        res = self._res_index[self._cell[on]]
        whole = np.floor(self._stock).astype(np.int64)
        takers = rank_in_group(res, self._resources.size) < whole[res]
        harvesters = on[takers]
        self._stock -= np.bincount(res[takers], minlength=self._resources.size)
        gained = self._energy[harvesters] + self._params["harvest_energy"]
        self._energy[harvesters] = np.minimum(gained, self._params["max_energy"])
        self._last["harvested"] = harvesters.size

    def _respawn_finished(self) -> None:
        occupancy = np.empty(self.n_cells, dtype=np.int64)
        n_done, deaths, goals = finished(self._cell, self._energy, self._on_goal,
                                         self._has_goals, self._scratch, occupancy)
        self._last["deaths"], self._last["goals"] = deaths, goals
        if n_done == 0:
            return
        done = self._scratch[:n_done].copy()
        self._place(done, occupancy)
        self._energy[done] = self._params["max_energy"]

    def _place(self, agents: np.ndarray, occupancy: np.ndarray) -> None:
        """Put ``agents`` on empty cells drawn in proportion to their free room."""
        room = np.maximum(self.capacity - occupancy[self._spawn], 0)
        ends = np.cumsum(room)
        slots = self._rng.choice(int(ends[-1]), size=agents.size, replace=False)
        self._cell[agents] = self._spawn[np.searchsorted(ends, slots, side="right")]

    def _observe(self) -> np.ndarray:
        obs = np.empty((self.n_agents, len(self._samplers)), dtype=np.int64)
        for m, sampler in enumerate(self._samplers):
            sampler.sample(self._cell, self._rng, out=obs[:, m])
        return obs

    def set_cells(self, cells: np.ndarray) -> None:
        """Move every agent to ``cells`` (``(n_agents,)`` ints, ``row * size + col``), e.g. to
        set up a scenario after ``reset``; WorldError for a cell off the grid, a wall, or more
        agents on a cell than its capacity. The next ``step`` observes from there."""
        arr = np.asarray(cells)
        if arr.shape != (self.n_agents,) or not np.issubdtype(arr.dtype, np.integer):
            raise WorldError(f"cells must be {self.n_agents} integers, got {arr.dtype} "
                             f"{arr.shape}")
        if ((arr < 0) | (arr >= self.n_cells)).any():
            raise WorldError(f"cells must be in 0..{self.n_cells - 1}")
        walls = np.flatnonzero(np.asarray(self.kinds).ravel()[arr] == WALL)
        if walls.size:
            raise WorldError(f"agent {int(walls[0])} would be on a wall (cell {arr[walls[0]]})")
        occupancy = np.bincount(arr, minlength=self.n_cells)
        if occupancy.max() > self.capacity:
            raise WorldError(f"cell {int(occupancy.argmax())} would hold "
                             f"{int(occupancy.max())} agents, over capacity {self.capacity}")
        self._cell = arr.astype(np.int64)

    # --------------------------------------------------------------------------- inspection

    @property
    def energy(self) -> np.ndarray:
        """Each agent's energy (read-only view, ``(n_agents,)`` int32)."""
        return read_only(self._energy)

    @property
    def resource_levels(self) -> np.ndarray:
        """Stock of every cell, ``(size, size)`` float64 (0 off resource cells; a copy)."""
        grid = np.zeros(self.n_cells)
        grid[self._resources] = self._stock
        return grid.reshape(self.size, self.size)

    def grid_layers(self) -> dict[str, np.ndarray]:
        """``agents`` per cell, then the ``resources`` left on each cell (0 elsewhere) and the
        cell ``kind`` (0 empty, 1 wall, 2 goal, 3 hazard, 4 resource)."""
        return {"agents": self.occupancy(), "resources": self.resource_levels,
                "kind": np.asarray(self.kinds, dtype=np.uint8)}

    def stats(self) -> dict[str, Any]:
        """JSON-ready counts for a status line.

        Keys: ``tick``, ``n_agents``, ``capacity``; this tick's ``on_resource``, ``harvested``,
        ``collisions`` (moves refused by a full cell), ``blocked_by_wall`` (moves into a wall
        or off the grid), ``deaths``, ``goals``; totals since reset ``harvested_total``,
        ``collisions_total``, ``deaths_total``, ``goals_total``; ``mean_energy``,
        ``min_energy``, ``on_hazard``, ``resource_stock`` (per resource cell, row-major) and
        ``resource_total``.
        """
        out: dict[str, Any] = {"tick": self._tick, "n_agents": self.n_agents,
                               "capacity": self.capacity}
        out.update({k: int(v) for k, v in self._last.items()})
        out.update({f"{k}_total": int(v) for k, v in self._totals.items()})
        out["mean_energy"] = float(self._energy.mean())
        out["min_energy"] = int(self._energy.min())
        out["on_hazard"] = int(np.count_nonzero(self._on_hazard[self._cell]))
        out["resource_stock"] = [float(s) for s in self._stock]
        out["resource_total"] = float(self._stock.sum())
        return out
