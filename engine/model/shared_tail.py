"""Which factors of a model share one marginal per depth of its policy tree (the tail), so
that the multi-factor walk predicts them once per step (``docs/architecture.md``, the
shared-tail walk); the layout weighs its cost when it picks a path."""

from __future__ import annotations

from numba import njit


@njit(cache=True, inline="always")
def head_factors(num_states, node_depth, node_action, B_deps):
    """How many leading factors the multi-factor walk predicts node by node: every factor
    after them (the tail) takes one action at every node of a depth and moves with tail
    factors only, so its marginal is the same at every node of a depth. Node ``d`` of the
    tree (preorder) is its first node at depth ``d``."""
    F = num_states.shape[0]
    for k in range(node_depth.shape[0]):
        if node_depth[k] > k or node_depth[node_depth[k]] != node_depth[k]:
            return F
    first = F                        # the factors from ``first`` on take one action per depth
    while first > 1:
        f = first - 1
        for k in range(node_depth.shape[0]):
            if node_action[k, f] != node_action[node_depth[k], f]:
                break
        else:
            first -= 1
            continue
        break
    for h in range(first, F):
        moved_by_head = False
        for f in range(h, F):
            for i in range(B_deps.shape[1]):
                if 0 <= B_deps[f, i] < h:
                    moved_by_head = True
        if not moved_by_head:
            return h
    return F
