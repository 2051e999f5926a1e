"""ModelLayout: a model's arrays flattened and pre-derived for the compiled kernels.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import ConfigError
from engine.model.config import InferenceConfig
from engine.model.constants import EPS, EXP_M16, PYMDP1_MINVAL
from engine.model.factored_tables import empty_tables, factored_tables
from engine.model.likelihood_groups import LikelihoodGroups, likelihood_groups, log_floored
from engine.model.limits import check_policies
from engine.model.outcome_tables import outcome_tables

if TYPE_CHECKING:
    from engine.model.generative_model import GenerativeModel
#: B factors whose share of non-zeros is below this are multiplied sparsely.
SPARSE_B_DENSITY = 0.25

@dataclasses.dataclass(frozen=True)
class PolicyTree:
    """Policies as a prefix tree; nodes in depth-first preorder.

    ``depth[k]`` is the step of node ``k`` (0 = first action), ``action[k]`` its joint action,
    ``leaf_of_policy[p]`` the node that ends policy ``p``.
    """

    depth: np.ndarray
    action: np.ndarray
    leaf_of_policy: np.ndarray
    policies: np.ndarray

    @staticmethod
    def build(policies: np.ndarray) -> PolicyTree:
        n_policies, horizon, n_factors = policies.shape
        children: list[dict[tuple[int, ...], int]] = [{}]
        node_depth, node_action, node_parent = [-1], [(0,) * n_factors], [-1]
        leaf = np.empty(n_policies, dtype=np.int64)
        for p in range(n_policies):
            node = 0
            for t in range(horizon):
                key = tuple(int(a) for a in policies[p, t])
                nxt = children[node].get(key)
                if nxt is None:
                    nxt = len(node_depth)
                    children[node][key] = nxt
                    children.append({})
                    node_depth.append(t)
                    node_action.append(key)
                    node_parent.append(node)
                node = nxt
            leaf[p] = node
        # depth-first preorder from the root's children, in insertion (policy) order
        order: list[int] = []
        stack = list(reversed(children[0].values()))
        while stack:
            k = stack.pop()
            order.append(k)
            stack.extend(reversed(children[k].values()))
        position = {old: new for new, old in enumerate(order)}
        depth = np.array([node_depth[k] for k in order], dtype=np.int64)
        action = np.array([node_action[k] for k in order], dtype=np.int64).reshape(-1, n_factors)
        leaf_new = np.array([position[int(k)] for k in leaf], dtype=np.int64)
        return PolicyTree(depth=depth, action=action, leaf_of_policy=leaf_new,
                          policies=np.ascontiguousarray(policies, dtype=np.int64))

    @property
    def n_nodes(self) -> int:
        return int(self.depth.shape[0])


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """Flat, kernel-ready arrays of one model under one config. See the module docstring.

    Model arrays stay float64 whatever the config's dtype: they are shared (counted once) and
    small, and keeping them exact is what lets the float32 path agree with pymdp to 1e-4.
    ``dtype`` is the precision of the per-agent state (beliefs, q(pi), G).
    """

    dtype: np.dtype
    num_states: np.ndarray      # (F,)
    num_obs: np.ndarray         # (M,)
    num_controls: np.ndarray    # (F,)
    state_offset: np.ndarray    # (F+1,) offsets of each factor in a flat belief vector
    joint_stride: np.ndarray    # (F,) stride of each factor in the joint state index
    joint_slot: np.ndarray      # (F, n_joint) where joint state j's factor-f state sits in a
                                # flat belief vector
    n_joint: int
    A_flat: np.ndarray          # concatenated compact A_m, each (O_m, K_m) row-major
    A_offset: np.ndarray        # (M+1,)
    A_cols: np.ndarray          # (M,) K_m
    jidx: np.ndarray            # (M, n_joint) compact column of each joint state
    lnA_flat: np.ndarray        # max(ln A_flat, ln_floor) (pymdp 1.x, one factor), or (0,)
    LL_deps: np.ndarray         # pymdp 1.x, several factors: likelihood_groups' tables
    LL_mods: np.ndarray         # (grouped modalities over the same factors), or empty
    LL_offset: np.ndarray
    LL_cols: np.ndarray
    LL_flat: np.ndarray
    F_deps: np.ndarray          # pymdp 1.x, several factors, when the walk values nodes from
    F_amb: np.ndarray           # factor marginals: factored_tables' per-modality tables
    F_amb_offset: np.ndarray    # (empty otherwise)
    F_sparse: np.ndarray
    F_ptr: np.ndarray
    F_col: np.ndarray
    F_val: np.ndarray
    factored_reason: str        # why the walk does or does not value nodes that way
    Bt_flat: np.ndarray         # concatenated B_f transposed to (U, S_f, K_f), K_f the joint
                                # states of B_factor_list[f] (S_f when f depends on itself)
    B_deps: np.ndarray          # (F, max deps) B_factor_list, padded with -1
    B_offset: np.ndarray        # (F+1,)
    B_sparse: np.ndarray        # (F,) bool
    Bs_ptr: np.ndarray          # (F, max_U + 1) start of each (f, u) run in Bs_*
    Bs_rowptr: np.ndarray       # (F, max_U, max_S + 1) start of each row of B[f][:, :, u]
    Bs_col: np.ndarray
    Bs_val: np.ndarray
    B_det: np.ndarray           # (F, max_U) bool: every column of sparse B[f][:, :, u] has
                                # exactly one non-zero (a deterministic move)
    Bd_row: np.ndarray          # (F, max_U, max_S) where column c of such a B[f][:, :, u] goes
    Bd_val: np.ndarray          # (F, max_U, max_S) and its value
    jidx_identity: np.ndarray   # (M,) bool: modality m's compact column is the joint state
    Bc_colptr: np.ndarray       # (max_U, S + 1) column pointers of sparse B[0][:, :, u] (F = 1)
    Bc_row: np.ndarray          # rows of those columns' non-zeros
    utility_B: np.ndarray       # (policy_len, max_U, S) = B[0][:, :, u]^T utility[t] (F = 1)
    D_flat: np.ndarray          # (S_tot,)
    utility: np.ndarray         # (policy_len, n_joint)
    ambiguity: np.ndarray       # (n_joint,)
    po_ptr: np.ndarray          # (n_joint+1,)
    po_idx: np.ndarray          # joint outcome index
    po_val: np.ndarray
    po_dense: np.ndarray        # (n_joint, n_joint_obs) p(outcome | joint state), or
                                # (0, 0) when the information gain takes another path
    pf_const: np.ndarray        # (n_joint,) the constant of modality pf_modality's column, or
                                # (0,) when the gain does not split that modality off
    pf_ptr: np.ndarray          # (n_joint+1,) its other entries per joint state: outcome,
    pf_idx: np.ndarray          # value minus the constant
    pf_val: np.ndarray
    pf_rest: np.ndarray         # (n_joint, O_rest) joint outcome of the other modalities
    n_joint_obs: int            # outcomes of the gain (outcome_tables.gain_outcome_count)
    lnC: np.ndarray             # (policy_len, sum O_m) ln(softmax(C)+eps) per step
    lnE: np.ndarray             # (P,)
    obs_offset: np.ndarray      # (M+1,) offsets of each modality in lnC's outcome axis
    obs_stride: np.ndarray      # (M,) stride of each modality in the joint outcome index
    tree: PolicyTree
    first_action: np.ndarray    # (P, F)
    control_mask: np.ndarray    # (F,) bool
    semantics: str              # "pymdp0" or "pymdp1" (InferenceConfig.semantics)
    gain_cut: np.ndarray        # (1,) predicted joint states at or below it add no gain
                                # (pymdp 0.0.7.1's e^-16; 0 for pymdp 1.x)
    ln_floor: np.ndarray        # (1,) 0: state inference takes ln(prod_m A + 1e-16) (0.0.7.1);
                                # else sum_m max(ln A_m, ln_floor) (1.x: ln of its MINVAL)

    @property
    def n_factors(self) -> int:
        return int(self.num_states.shape[0])

    @property
    def n_modalities(self) -> int:
        return int(self.num_obs.shape[0])

    @property
    def n_policies(self) -> int:
        return int(self.first_action.shape[0])

    @property
    def policy_len(self) -> int:
        return int(self.utility.shape[0])

    @property
    def state_size(self) -> int:
        return int(self.state_offset[-1])

    @property
    def gain_path(self) -> str:
        """How the state information gain reads p(o | s): ``dense``, ``sparse`` or
        ``split`` (one modality as a constant plus sparse entries, the others dense)."""
        if self.po_dense.shape[0]:
            return "dense"
        return "split" if self.pf_const.shape[0] else "sparse"

    def gain_path_reason(self) -> str:
        """One line: the information gain's path and why it was chosen."""
        table = self.n_joint * self.n_joint_obs
        share = self.po_val.shape[0] / max(1, table)
        percent = f"{share:.0%}" if share >= 0.01 else f"{share:.2%}"
        kind = "per-modality outcome" if self.semantics == "pymdp1" else "joint-outcome"
        what = f"{percent} of the {self.n_joint} x {self.n_joint_obs} {kind} table"
        if self.gain_path == "sparse":
            return f"sparse: {what} is non-zero"
        if self.gain_path == "dense" and self.semantics == "pymdp1":
            return f"dense: {what} is non-zero"
        if self.gain_path == "dense":
            return (f"dense: {what} is non-zero; no modality splits into a constant plus "
                    "entries for less")
        extra = self.pf_val.shape[0] / max(1, self.n_joint)
        return (f"split: {what} is non-zero; one modality's columns are a constant plus "
                f"{extra:.1f} other entries each")

    def nbytes(self) -> int:
        """Bytes of every array in the layout (the shared cost of a population)."""
        total = 0
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                total += value.nbytes
        tree = self.tree
        return total + tree.depth.nbytes + tree.action.nbytes + tree.leaf_of_policy.nbytes

    @staticmethod
    def build(model: GenerativeModel, config: InferenceConfig) -> ModelLayout:
        dtype = np.dtype(config.dtype)
        per_modality = config.semantics == "pymdp1"
        if model.has_B_dependencies and (config.learn_A or config.learn_B
                                         or config.use_param_info_gain):
            raise ConfigError("learning and the parameter information gain are not supported "
                              "for a model whose transitions depend on other factors "
                              "(B_factor_list)")
        n_factors, n_mod = model.num_factors, model.num_modalities
        check_policies(model.num_controls, model.control_fac_idx if config.control_fac_idx
                       is None else config.control_fac_idx, config.policy_len,
                       None if model.policies is None else model.policies.shape[0])
        num_states = np.array(model.num_states, dtype=np.int64)
        num_obs = np.array(model.num_obs, dtype=np.int64)
        n_joint = int(np.prod(num_states))
        state_offset = np.concatenate([[0], np.cumsum(num_states)]).astype(np.int64)
        joint_stride = np.ones(n_factors, dtype=np.int64)
        for f in range(n_factors - 2, -1, -1):
            joint_stride[f] = joint_stride[f + 1] * num_states[f + 1]
        joint_index = np.indices(tuple(model.num_states)).reshape(n_factors, n_joint)

        # A, compact per modality, and the joint-state -> compact-column map
        A_cols = np.array([int(np.prod(a.shape[1:])) for a in model.A], dtype=np.int64)
        A_flat = np.concatenate([a.reshape(a.shape[0], -1).ravel() for a in model.A])
        A_offset = np.concatenate([[0], np.cumsum(num_obs * A_cols)]).astype(np.int64)
        jidx = np.zeros((n_mod, n_joint), dtype=np.int64)
        for m, deps in enumerate(model.A_factor_list):
            col = np.zeros(n_joint, dtype=np.int64)
            for f in deps:
                col = col * model.num_states[f] + joint_index[f]
            jidx[m] = col
        lnA_flat = log_floored(A_flat) if per_modality and n_factors == 1 else np.zeros(0)
        groups = (likelihood_groups(model) if per_modality and n_factors > 1 else
                  LikelihoodGroups(np.zeros((0, n_factors)), np.zeros((0, n_mod)),
                                   np.zeros(1), np.zeros(0), np.zeros(0)))

        # B, transposed, and sparse coordinate lists where B is sparse
        Bt = [np.ascontiguousarray(np.transpose(b.reshape(b.shape[0], -1, b.shape[-1]),
                                                (2, 0, 1))) for b in model.B]
        Bt_flat = np.concatenate([b.ravel() for b in Bt])
        B_offset = np.concatenate([[0], np.cumsum([b.size for b in Bt])]).astype(np.int64)
        dependent = [deps != (f,) for f, deps in enumerate(model.B_factor_list)]
        B_sparse = np.array([not dependent[f] and np.count_nonzero(b) / b.size
                             < SPARSE_B_DENSITY for f, b in enumerate(model.B)])
        B_deps = np.full((n_factors, max(len(d) for d in model.B_factor_list)), -1,
                         dtype=np.int64)
        for f, deps in enumerate(model.B_factor_list):
            B_deps[f, :len(deps)] = deps
        max_u = int(max(model.num_controls))
        max_s = int(max(model.num_states))
        Bs_ptr = np.zeros((n_factors, max_u + 1), dtype=np.int64)
        Bs_rowptr = np.zeros((n_factors, max_u, max_s + 1), dtype=np.int64)
        cols, vals = [], []
        count = 0
        for f, b in enumerate(Bt):
            for u in range(max_u):
                Bs_ptr[f, u] = count
                Bs_rowptr[f, u, :] = count
                if B_sparse[f] and u < b.shape[0]:
                    r, c = np.nonzero(b[u])      # row-major: by row, then column (dense order)
                    Bs_rowptr[f, u, 1:b.shape[1] + 1] = count + np.cumsum(
                        np.bincount(r, minlength=b.shape[1]))
                    cols.append(c)
                    vals.append(b[u][r, c])
                    count += r.size
            Bs_ptr[f, max_u] = count
        Bs_col = np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)
        Bs_val = np.concatenate(vals) if vals else np.zeros(0)
        B_det = np.zeros((n_factors, max_u), dtype=bool)
        Bd_row = np.zeros((n_factors, max_u, max_s), dtype=np.int64)
        Bd_val = np.zeros((n_factors, max_u, max_s))
        for f, b in enumerate(Bt):
            for u in range(b.shape[0] if B_sparse[f] else 0):
                nonzero = b[u] != 0                      # (S_next, S_prev)
                if np.all(nonzero.sum(axis=0) == 1):
                    B_det[f, u] = True
                    rows = np.argmax(nonzero, axis=0)
                    Bd_row[f, u, :b.shape[2]] = rows
                    Bd_val[f, u, :b.shape[2]] = b[u][rows, np.arange(b.shape[2])]
        jidx_identity = np.array([np.array_equal(jidx[m], np.arange(n_joint))
                                  for m in range(n_mod)], dtype=bool)

        # preferences for every planning step: ln(softmax(C[:, t]) + eps) (pymdp 0.0.7.1) or
        # C[:, t] as given (pymdp 1.x)
        horizon = config.policy_len
        lnC = np.zeros((horizon, int(num_obs.sum())))
        obs_offset = np.concatenate([[0], np.cumsum(num_obs)])
        for m, c in enumerate(model.C):
            if c.ndim == 2 and c.shape[1] < horizon:
                raise ConfigError(f"C[{m}] has {c.shape[1]} time columns but policy_len is "
                                  f"{horizon}")
            for t in range(horizon):
                col = c if c.ndim == 1 else c[:, t]
                if config.semantics == "pymdp1":
                    lnC[t, obs_offset[m]:obs_offset[m + 1]] = col
                    continue
                p = np.exp(col - col.max())
                p = p / p.sum()
                lnC[t, obs_offset[m]:obs_offset[m + 1]] = np.log(p + EPS)

        # joint-state tables: utility here, ambiguity and outcome probabilities below
        utility = np.zeros((horizon, n_joint))
        for m in range(n_mod):
            a = model.A[m].reshape(num_obs[m], -1)[:, jidx[m]]           # (O_m, n_joint)
            utility += lnC[:, obs_offset[m]:obs_offset[m + 1]] @ a
        # single sparse factor: column lists of B and utility pulled back through each action,
        # which let a policy-tree leaf be valued from its parent's belief without predicting it
        if n_factors == 1 and B_sparse[0]:
            b0 = model.B[0]
            s0, u0 = b0.shape[0], b0.shape[2]
            Bc_colptr = np.zeros((u0, s0 + 1), dtype=np.int64)
            rows_c = []
            count = 0
            for u in range(u0):
                c_idx, r_idx = np.nonzero(b0[:, :, u].T)     # by column, then row
                Bc_colptr[u, 1:] = count + np.cumsum(np.bincount(c_idx, minlength=s0))
                Bc_colptr[u, 0] = count
                rows_c.append(r_idx)
                count += r_idx.size
            Bc_row = np.concatenate(rows_c).astype(np.int64)
            utility_B = np.einsum("rcu,tr->tuc", b0, utility)
        else:
            Bc_colptr = np.zeros((0, 1), dtype=np.int64)
            Bc_row = np.zeros(0, dtype=np.int64)
            utility_B = np.zeros((0, 0, 0))
        tables = outcome_tables(model, jidx, n_joint, config.semantics)
        pf = tables.split

        obs_stride = np.ones(n_mod, dtype=np.int64)
        for m in range(n_mod - 2, -1, -1):
            obs_stride[m] = obs_stride[m + 1] * num_obs[m + 1]

        policies = model.policies_for(horizon, config.control_fac_idx)
        if config.control_fac_idx is not None:
            for f in config.control_fac_idx:
                if f >= n_factors:
                    raise ConfigError(f"InferenceConfig.control_fac_idx: factor {f} out of "
                                      f"range 0..{n_factors - 1}")
        control = set(config.control_fac_idx if config.control_fac_idx is not None
                      else model.control_fac_idx)
        E = model.prior_over_policies(policies.shape[0])
        tree = PolicyTree.build(policies)
        per_state = (tables.n_outcomes if tables.dense.shape[0]
                     else tables.val.shape[0] / max(1, n_joint))
        factored = (factored_tables(model, tree.depth, tree.action, B_deps, per_state,
                                    tables.dense.shape[0] > 0)
                    if per_modality else empty_tables(n_factors))

        def fl(x: np.ndarray) -> np.ndarray:
            out = np.ascontiguousarray(x, dtype=np.float64)
            out.setflags(write=False)
            return out

        def ix(x: np.ndarray) -> np.ndarray:
            out = np.ascontiguousarray(x, dtype=np.int64)
            out.setflags(write=False)
            return out

        return ModelLayout(
            dtype=dtype, num_states=ix(num_states), num_obs=ix(num_obs),
            num_controls=ix(np.array(model.num_controls)), state_offset=ix(state_offset),
            joint_stride=ix(joint_stride), joint_slot=ix(joint_index + state_offset[:-1, None]),
            n_joint=n_joint,
            A_flat=fl(A_flat), A_offset=ix(A_offset), A_cols=ix(A_cols), jidx=ix(jidx),
            lnA_flat=fl(lnA_flat), LL_deps=ix(groups.deps), LL_mods=ix(groups.mods),
            LL_offset=ix(groups.offset), LL_cols=ix(groups.cols), LL_flat=fl(groups.flat),
            Bt_flat=fl(Bt_flat), B_offset=ix(B_offset), B_sparse=np.array(B_sparse, dtype=bool),
            B_deps=ix(B_deps), Bs_ptr=ix(Bs_ptr), Bs_rowptr=ix(Bs_rowptr), Bs_col=ix(Bs_col),
            Bs_val=fl(Bs_val),
            B_det=B_det, Bd_row=ix(Bd_row), Bd_val=fl(Bd_val),
            jidx_identity=jidx_identity, Bc_colptr=ix(Bc_colptr), Bc_row=ix(Bc_row),
            utility_B=fl(utility_B),
            D_flat=fl(np.concatenate(model.D)), utility=fl(utility),
            ambiguity=fl(tables.ambiguity), po_ptr=ix(tables.ptr), po_idx=ix(tables.idx),
            po_val=fl(tables.val), po_dense=fl(tables.dense),
            pf_const=fl(pf.const if pf else np.zeros(0)),
            pf_ptr=ix(pf.ptr if pf else np.zeros(1)), pf_idx=ix(pf.idx if pf else np.zeros(0)),
            pf_val=fl(pf.val if pf else np.zeros(0)),
            pf_rest=fl(pf.rest if pf else np.zeros((0, 0))),
            n_joint_obs=tables.n_outcomes, lnC=fl(lnC),
            lnE=fl(np.log(E + EPS)), obs_offset=ix(obs_offset), obs_stride=ix(obs_stride),
            tree=tree, first_action=ix(policies[:, 0, :]),
            control_mask=np.array([f in control for f in range(n_factors)], dtype=bool),
            semantics=config.semantics,
            F_deps=ix(factored.deps), F_amb=fl(factored.amb),
            F_amb_offset=ix(factored.amb_offset), F_sparse=factored.sparse,
            F_ptr=ix(factored.ptr), F_col=ix(factored.col), F_val=fl(factored.val),
            factored_reason=factored.reason,
            gain_cut=fl(np.array([0.0 if per_modality else EXP_M16])),
            ln_floor=fl(np.array([np.log(PYMDP1_MINVAL) if per_modality else 0.0])),
        )


def layout_of(model: GenerativeModel, config: InferenceConfig) -> ModelLayout:
    """Kernel-ready derived arrays of ``model`` for ``config`` (computed once, cached on the
    model)."""
    key = (config.policy_len, config.control_fac_idx, config.dtype, config.semantics)
    found = model.derived_layouts.get(key)
    if found is None:
        found = ModelLayout.build(model, config)
        model.derived_layouts[key] = found
    return found
