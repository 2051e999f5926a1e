"""The model arrays the Numba kernels read: the :data:`KernelModel` namedtuple the compiled
code works with, and :class:`KernelModelRef`, the same arrays behind one reference that the
step's entry point takes.

Numba types a namedtuple argument by typing each of its arrays on every call (about 14 us for
the 40-odd arrays); a structref is typed and unboxed as one object, and the entry point
unpacks it into the namedtuple at no cost.
"""

from __future__ import annotations

from collections import namedtuple

from numba import njit
from numba.core import types
from numba.experimental import structref

KernelModel = namedtuple(
    "KernelModel",
    [
        "num_states", "num_obs", "num_controls", "state_offset", "joint_stride", "joint_slot",
        "A_flat", "A_offset", "A_cols", "jidx", "Bt_flat", "B_offset", "B_sparse", "Bs_rowptr",
        "Bs_col", "Bs_val", "B_det", "Bd_row", "Bd_val", "jidx_identity", "D_flat", "utility",
        "ambiguity", "po_ptr", "po_idx", "po_val", "po_dense", "pf_const", "pf_ptr", "pf_idx",
        "pf_val", "pf_rest", "lnE", "lnC", "obs_offset", "obs_stride", "node_depth",
        "node_action", "leaf_of_policy", "first_action", "Bc_colptr", "Bc_row", "utility_B",
        "gain_cut", "ln_floor", "B_deps", "lnA_flat", "LL_deps",
        "LL_mods", "LL_offset", "LL_cols", "LL_flat", "F_deps", "F_amb", "F_amb_offset",
        "F_sparse", "F_ptr", "F_col", "F_val",
    ],
)



@structref.register
class KernelModelType(types.StructRef):
    """Numba type of :class:`KernelModelRef`."""

    def preprocess_fields(self, fields):  # noqa: ANN001, ANN201
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class KernelModelRef(structref.StructRefProxy):
    """A :data:`KernelModel`'s arrays behind one reference (build with
    :func:`kernel_model_ref`)."""


structref.define_proxy(KernelModelRef, KernelModelType, list(KernelModel._fields))


def kernel_model_ref(km: KernelModel) -> KernelModelRef:
    """``km``'s arrays behind one reference, for ``step_agents``."""
    return _ref_of(km)


@njit(cache=True)
def _ref_of(km):
    """Compiled and cached: the proxy's own constructor compiles anew in every process."""
    return KernelModelRef(km.num_states, km.num_obs, km.num_controls, km.state_offset,
                          km.joint_stride, km.joint_slot, km.A_flat, km.A_offset, km.A_cols,
                          km.jidx, km.Bt_flat, km.B_offset, km.B_sparse, km.Bs_rowptr, km.Bs_col,
                          km.Bs_val, km.B_det, km.Bd_row, km.Bd_val, km.jidx_identity, km.D_flat,
                          km.utility, km.ambiguity, km.po_ptr, km.po_idx, km.po_val, km.po_dense,
                          km.pf_const, km.pf_ptr, km.pf_idx, km.pf_val, km.pf_rest, km.lnE,
                          km.lnC, km.obs_offset, km.obs_stride, km.node_depth, km.node_action,
                          km.leaf_of_policy, km.first_action, km.Bc_colptr, km.Bc_row,
                          km.utility_B, km.gain_cut, km.ln_floor, km.B_deps,
                          km.lnA_flat, km.LL_deps, km.LL_mods, km.LL_offset,
                          km.LL_cols, km.LL_flat, km.F_deps, km.F_amb, km.F_amb_offset,
                          km.F_sparse, km.F_ptr, km.F_col, km.F_val)


@njit(cache=True, inline="always")
def unpack(ref):
    """The :data:`KernelModel` of a :class:`KernelModelRef`, inside compiled code."""
    return KernelModel(ref.num_states, ref.num_obs, ref.num_controls, ref.state_offset,
                       ref.joint_stride, ref.joint_slot, ref.A_flat, ref.A_offset, ref.A_cols,
                       ref.jidx, ref.Bt_flat, ref.B_offset, ref.B_sparse, ref.Bs_rowptr,
                       ref.Bs_col, ref.Bs_val, ref.B_det, ref.Bd_row, ref.Bd_val,
                       ref.jidx_identity, ref.D_flat, ref.utility, ref.ambiguity, ref.po_ptr,
                       ref.po_idx, ref.po_val, ref.po_dense, ref.pf_const, ref.pf_ptr,
                       ref.pf_idx, ref.pf_val, ref.pf_rest, ref.lnE, ref.lnC, ref.obs_offset,
                       ref.obs_stride, ref.node_depth, ref.node_action, ref.leaf_of_policy,
                       ref.first_action, ref.Bc_colptr, ref.Bc_row, ref.utility_B,
                       ref.gain_cut, ref.ln_floor, ref.B_deps, ref.lnA_flat,
                       ref.LL_deps, ref.LL_mods, ref.LL_offset, ref.LL_cols, ref.LL_flat,
                       ref.F_deps, ref.F_amb, ref.F_amb_offset, ref.F_sparse, ref.F_ptr,
                       ref.F_col, ref.F_val)
