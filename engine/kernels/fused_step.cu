// One agent step fused into one kernel: one thread per agent, every intermediate in the
// thread's local arrays (registers / local memory), the shared model read from global memory.
//
// The arithmetic is cpu.py's, line for line (state inference by pymdp's run_vanilla_fpi, the
// policy tree walked depth-first, spm_MDP_G over the touched joint outcomes, one sparse
// factor's tree walk over the states above e^-16, q(pi), marginal or full-policy action
// selection with the counter-based stream), without cpu.py's per-thread memos.
//
// fused.py prepends a prelude that defines, for one (model, config) pair:
//   REAL, STATE_T           intermediate and stored-state precision (double / float)
//   AL_EPS, AL_EXP_M16      pymdp's 1e-16 and e^-16
//   NF NM NJ STOT NJO NNODES NPOL HORIZON MAXU MAXS NMARG   the layout's sizes
//   SPARSE_SINGLE           1 for one hidden factor with sparse B (cpu.py's faster tree walk)
//   OFF_<field>             offset of each layout array in the packed int (mi) / float (mf)
//                           buffer
// and, for the host build (g++, what CI runs; the kernel's NumPy twin), AGENTLOOP_HOST.

#ifdef AGENTLOOP_HOST
#include <cmath>
struct agentloop_dim3 { long long x; };
static agentloop_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
using std::exp;
using std::log;
using std::fabs;
#endif

typedef long long i64;
typedef unsigned long long u64;

#define MI(name) (mi + OFF_##name)
#define MF(name) (mf + OFF_##name)

#define FLAG_UTILITY 1
#define FLAG_INFO_GAIN 2
#define FLAG_STOCHASTIC 4
#define FLAG_FULL_SAMPLING 8

// dst = B[f][:, :, u] @ src (cpu._apply_B: deterministic moves scattered by column, sparse
// rows from their coordinate lists, dense rows otherwise); src is REAL or the stored STATE_T
template <typename T>
__device__ __forceinline__ void apply_B(const i64* __restrict__ mi, const double* __restrict__ mf,
                                        int f, i64 u, const T* src, REAL* dst) {
    const int S = (int)MI(num_states)[f];
    const i64 fu = (i64)f * MAXU + u;
    if (MI(B_sparse)[f] && MI(B_det)[fu]) {
        for (int r = 0; r < S; ++r) dst[r] = 0.0;
        for (int c = 0; c < S; ++c)
            dst[MI(Bd_row)[fu * MAXS + c]] += (REAL)MF(Bd_val)[fu * MAXS + c] * (REAL)src[c];
    } else if (MI(B_sparse)[f]) {
        const i64* rowptr = MI(Bs_rowptr) + fu * (MAXS + 1);
        for (int r = 0; r < S; ++r) {
            REAL acc = 0.0;
            for (i64 k = rowptr[r]; k < rowptr[r + 1]; ++k)
                acc += (REAL)MF(Bs_val)[k] * (REAL)src[MI(Bs_col)[k]];
            dst[r] = acc;
        }
    } else {
        const double* base = MF(Bt_flat) + MI(B_offset)[f] + u * S * S;
        for (int r = 0; r < S; ++r) {
            REAL acc = 0.0;
            for (int c = 0; c < S; ++c) acc += (REAL)base[r * S + c] * (REAL)src[c];
            dst[r] = acc;
        }
    }
}

__device__ __forceinline__ void softmax_into(const REAL* x, REAL* out, int lo, int hi) {
    REAL mx = x[lo];
    for (int s = lo + 1; s < hi; ++s)
        if (x[s] > mx) mx = x[s];
    REAL total = 0.0;
    for (int s = lo; s < hi; ++s) {
        const REAL e = exp(x[s] - mx);
        out[s] = e;
        total += e;
    }
    for (int s = lo; s < hi; ++s) out[s] /= total;
}

__device__ __forceinline__ int state_of(const i64* __restrict__ mi, int j, int f) {
    return (int)((j / MI(joint_stride)[f]) % MI(num_states)[f]);
}

// out[j] = prod_f q[f][idx_f(j)] over the joint states
__device__ __forceinline__ void joint_of(const i64* __restrict__ mi, const REAL* q, REAL* out) {
    for (int j = 0; j < NJ; ++j) {
        REAL v = 1.0;
        for (int f = 0; f < NF; ++f) v *= q[MI(state_offset)[f] + state_of(mi, j, f)];
        out[j] = v;
    }
}

__device__ __forceinline__ REAL factor_entropy_terms(const REAL* q, const REAL* lnprior) {
    REAL total = 0.0;
    for (int s = 0; s < STOT; ++s) total += q[s] * log(q[s] + (REAL)AL_EPS) - q[s] * lnprior[s];
    return total;
}

// pymdp's run_vanilla_fpi for one agent (cpu.infer_states_one): prior -> post
__device__ __forceinline__ void infer_states(const i64* __restrict__ mi,
                                             const double* __restrict__ mf,
                                             const i64* __restrict__ obs_row, const REAL* prior,
                                             REAL* post, i64 num_iter, REAL dF0,
                                             REAL dF_tol) {
#if NF == 1
    // the likelihood prod_m A_m[o_m, s] multiplied in cpu.py's order, then the posterior
    // (L + e)(p + e) normalised by four running sums, as cpu.py adds them
    (void)num_iter; (void)dF0; (void)dF_tol;
    REAL t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    for (int s = 0; s < STOT; ++s) {
        REAL like = 1.0;
        for (int m = 0; m < NM; ++m) {
            const i64 row = MI(A_offset)[m] + obs_row[m] * MI(A_cols)[m];
            like *= (REAL)MF(A_flat)[row + (MI(jidx_identity)[m] ? s : MI(jidx)[m * NJ + s])];
        }
        const REAL v = (like + (REAL)AL_EPS) * (prior[s] + (REAL)AL_EPS);
        post[s] = v;
        if (s >= STOT - STOT % 4) t0 += v;          // the tail after the last group of four
        else if (s % 4 == 0) t0 += v;
        else if (s % 4 == 1) t1 += v;
        else if (s % 4 == 2) t2 += v;
        else t3 += v;
    }
    const REAL inv = (REAL)1.0 / ((t0 + t1) + (t2 + t3));
    for (int k = 0; k < STOT; ++k) post[k] = post[k] * inv;
#else
    REAL lnL[NJ], lnprior[STOT], qL[STOT], qtmp[STOT], qj[NJ];
    for (int j = 0; j < NJ; ++j) {
        REAL like = 1.0;
        for (int m = 0; m < NM; ++m)
            like *= (REAL)MF(A_flat)[MI(A_offset)[m] + obs_row[m] * MI(A_cols)[m]
                                     + MI(jidx)[m * NJ + j]];
        lnL[j] = log(like + (REAL)AL_EPS);
    }
    for (int f = 0; f < NF; ++f)
        for (i64 s = MI(state_offset)[f]; s < MI(state_offset)[f + 1]; ++s)
            post[s] = (REAL)1.0 / (REAL)MI(num_states)[f];
    for (int s = 0; s < STOT; ++s) lnprior[s] = log(prior[s] + (REAL)AL_EPS);
    REAL prev_vfe = factor_entropy_terms(post, lnprior);
    REAL dF = dF0;
    for (i64 it = 0; it < num_iter && dF >= dF_tol; ++it) {
        // Jacobi sweep: every factor's update reads the marginals of the previous sweep
        for (int s = 0; s < STOT; ++s) qL[s] = 0.0;
        for (int j = 0; j < NJ; ++j) {
            for (int f = 0; f < NF; ++f) {
                REAL w = lnL[j];
                for (int g = 0; g < NF; ++g)
                    if (g != f) w *= post[MI(state_offset)[g] + state_of(mi, j, g)];
                qL[MI(state_offset)[f] + state_of(mi, j, f)] += w;
            }
        }
        for (int s = 0; s < STOT; ++s) qL[s] += lnprior[s];
        for (int f = 0; f < NF; ++f)
            softmax_into(qL, qtmp, (int)MI(state_offset)[f], (int)MI(state_offset)[f + 1]);
        for (int s = 0; s < STOT; ++s) post[s] = qtmp[s];
        joint_of(mi, post, qj);
        REAL accuracy = 0.0;
        for (int j = 0; j < NJ; ++j) accuracy += lnL[j] * qj[j];
        const REAL vfe = factor_entropy_terms(post, lnprior) - accuracy;
        dF = fabs(prev_vfe - vfe);
        prev_vfe = vfe;
    }
#endif
}

// qo += q * p(joint outcome | state j) over j's non-zero outcomes, newly touched outcomes
// appended to touched (cpu._add_outcomes); returns the new touched count
__device__ __forceinline__ int add_outcomes(const i64* __restrict__ mi,
                                            const double* __restrict__ mf, int j, REAL q,
                                            REAL* qo, int* touched, int n_touched) {
    for (i64 p = MI(po_ptr)[j]; p < MI(po_ptr)[j + 1]; ++p) {
        const i64 o = MI(po_idx)[p];
        if (qo[o] == 0.0) touched[n_touched++] = (int)o;
        qo[o] += q * (REAL)MF(po_val)[p];
    }
    return n_touched;
}

// sum qo ln(qo + 1e-16) over the touched outcomes, resetting them to zero (cpu._drain_entropy)
__device__ __forceinline__ REAL drain_entropy(REAL* qo, const int* touched, int n_touched) {
    REAL entropy = 0.0;
    for (int t = 0; t < n_touched; ++t) {
        const int o = touched[t];
        const REAL v = qo[o];
        entropy += v * log(v + (REAL)AL_EPS);
        qo[o] = 0.0;
    }
    return entropy;
}

// utility plus pymdp's spm_MDP_G for a predicted joint state q at step d (cpu._node_value);
// qo is all zeros on entry and on exit
__device__ __forceinline__ REAL node_value(const i64* __restrict__ mi,
                                           const double* __restrict__ mf, const REAL* q, int d,
                                           i64 flags, REAL* qo, int* touched) {
    REAL value = 0.0;
    if (flags & FLAG_UTILITY)
        for (int j = 0; j < NJ; ++j) value += q[j] * (REAL)MF(utility)[(i64)d * NJ + j];
    if (flags & FLAG_INFO_GAIN) {
        REAL ambiguity = 0.0;
        int n_touched = 0;
        for (int j = 0; j < NJ; ++j) {
            const REAL qv = q[j];
            if (qv > (REAL)AL_EXP_M16) {
                ambiguity += qv * (REAL)MF(ambiguity)[j];
                n_touched = add_outcomes(mi, mf, j, qv, qo, touched, n_touched);
            }
        }
        value += ambiguity - drain_entropy(qo, touched, n_touched);
    }
    return value;
}

#if SPARSE_SINGLE
// One factor with sparse B (cpu.policy_values_single, without its memo, which returns the very
// numbers it would compute): a node is valued from its parent's belief, its utility from the
// utility pulled back through its action (util[d * MAXU + u]), its information gain from the
// predicted states that can pass e^-16 only; only internal nodes materialise their prediction.

// indices of the states of q above tau, into big; their count (cpu._big_states)
__device__ __forceinline__ int big_states(const REAL* q, REAL tau, int* big) {
    int count = 0;
    for (int c = 0; c < STOT; ++c)
        if (q[c] > tau) big[count++] = c;
    return count;
}

// util[d * MAXU + u] = utility_B[d][u] . parent for every action u (cpu._dots_all, whose sums
// Numba reassociates: equal to rounding)
__device__ __forceinline__ void dots_all(const double* __restrict__ mf, const REAL* parent,
                                         int d, REAL* util) {
    const double* rows = MF(utility_B) + (i64)d * MAXU * STOT;
    for (int u = 0; u < MAXU; ++u) {
        REAL acc = 0.0;
        for (int c = 0; c < STOT; ++c) acc += parent[c] * (REAL)rows[u * STOT + c];
        util[d * MAXU + u] = acc;
    }
}

// spm_MDP_G of B[0][:, :, u] @ parent from the states above e^-16 (cpu._sparse_info_gain): a
// predicted state above e^-16 gets mass from a parent state above e^-16 / (2 S) (the big
// list); lists of up to eight states are sorted by state, as cpu.py sorts them for its memo
__device__ __forceinline__ REAL sparse_info_gain(const i64* __restrict__ mi,
                                                 const double* __restrict__ mf, i64 u,
                                                 const REAL* parent, const int* big, int n_big,
                                                 int* seen, int stamp, REAL* qo, int* touched,
                                                 int* rows, REAL* vals) {
    const i64* rowptr = MI(Bs_rowptr) + u * (MAXS + 1);
    int count = 0;
    for (int b = 0; b < n_big; ++b) {
        const int c = big[b];
        for (i64 k = MI(Bc_colptr)[u * (STOT + 1) + c]; k < MI(Bc_colptr)[u * (STOT + 1) + c + 1];
             ++k) {
            const int r = (int)MI(Bc_row)[k];
            if (seen[r] == stamp) continue;
            seen[r] = stamp;
            REAL v = 0.0;
            for (i64 kk = rowptr[r]; kk < rowptr[r + 1]; ++kk)
                v += (REAL)MF(Bs_val)[kk] * parent[MI(Bs_col)[kk]];
            if (v > (REAL)AL_EXP_M16) {
                rows[count] = r;
                vals[count] = v;
                ++count;
            }
        }
    }
    if (count <= 8) {
        for (int i = 1; i < count; ++i) {
            const int r = rows[i];
            const REAL v = vals[i];
            int j = i - 1;
            while (j >= 0 && rows[j] > r) {
                rows[j + 1] = rows[j];
                vals[j + 1] = vals[j];
                --j;
            }
            rows[j + 1] = r;
            vals[j + 1] = v;
        }
    }
    REAL ambiguity = 0.0;
    int n_touched = 0;
    for (int i = 0; i < count; ++i) {
        ambiguity += vals[i] * (REAL)MF(ambiguity)[rows[i]];
        n_touched = add_outcomes(mi, mf, rows[i], vals[i], qo, touched, n_touched);
    }
    return ambiguity - drain_entropy(qo, touched, n_touched);
}
#endif

// G of every policy: the prefix tree in depth-first preorder, each node valued from its
// predicted joint state (cpu.policy_values_one) or, for one sparse factor, from its parent's
// belief (cpu.policy_values_single)
__device__ __forceinline__ void policy_values(const i64* __restrict__ mi,
                                              const double* __restrict__ mf, const REAL* post,
                                              i64 max_depth, i64 flags, REAL* qo, int* touched,
                                              REAL* G) {
    REAL qdepth[HORIZON * STOT], gacc[HORIZON], gnode[NNODES];
#if SPARSE_SINGLE
    REAL util[HORIZON * MAXU], vals[STOT];
    int big[HORIZON * STOT], n_big[HORIZON], seen[STOT], rows[STOT];
    for (int s = 0; s < STOT; ++s) seen[s] = 0;
    int stamp = 0;
    const REAL tau = (REAL)AL_EXP_M16 / (REAL)(2.0 * STOT);
    const int last_internal = (int)(HORIZON < max_depth ? HORIZON : max_depth) - 1;
    if (flags & FLAG_INFO_GAIN) n_big[0] = big_states(post, tau, big);
    if (flags & FLAG_UTILITY) dots_all(mf, post, 0, util);
#elif NF > 1
    REAL qj[NJ];
#endif
    for (int k = 0; k < NNODES; ++k) {
        const int d = (int)MI(node_depth)[k];
        if (d >= max_depth) {                       // degraded horizon: value stops here
            gacc[d] = gacc[d - 1];
            gnode[k] = gacc[d];
            continue;
        }
#if SPARSE_SINGLE
        const i64 u = MI(node_action)[k];
        const REAL* parent = d == 0 ? post : qdepth + (d - 1) * STOT;
        REAL value = 0.0;
        if (flags & FLAG_UTILITY) value += util[d * MAXU + u];
        if (flags & FLAG_INFO_GAIN)
            value += sparse_info_gain(mi, mf, u, parent, big + d * STOT, n_big[d], seen,
                                      ++stamp, qo, touched, rows, vals);
        if (d < last_internal) {                    // only internal nodes are predicted
            apply_B(mi, mf, 0, u, parent, qdepth + d * STOT);
            if (flags & FLAG_INFO_GAIN)
                n_big[d + 1] = big_states(qdepth + d * STOT, tau, big + (d + 1) * STOT);
            if (flags & FLAG_UTILITY) dots_all(mf, qdepth + d * STOT, d + 1, util);
        }
#else
        const int dst = d * STOT;
        for (int f = 0; f < NF; ++f) {
            const int off = (int)MI(state_offset)[f];
            const i64 u = MI(node_action)[(i64)k * NF + f];
            if (d == 0) apply_B(mi, mf, f, u, post + off, qdepth + dst + off);
            else apply_B(mi, mf, f, u, qdepth + dst - STOT + off, qdepth + dst + off);
        }
#if NF == 1
        const REAL value = node_value(mi, mf, qdepth + dst, d, flags, qo, touched);
#else
        joint_of(mi, qdepth + dst, qj);
        const REAL value = node_value(mi, mf, qj, d, flags, qo, touched);
#endif
#endif
        gacc[d] = d == 0 ? value : gacc[d - 1] + value;
        gnode[k] = gacc[d];
    }
    for (int p = 0; p < NPOL; ++p) G[p] = gnode[MI(leaf_of_policy)[p]];
}

// engine.rng.uniform from the agent's key (gpu.agent_keys): SplitMix64's finaliser
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ double uniform_from_key(u64 key, i64 tick, i64 stream) {
    u64 z = mix64(key ^ ((u64)tick * 0xBF58476D1CE4E5B9ULL + 0x94D049BB133111EBULL));
    z = mix64(z ^ ((u64)stream * 0x94D049BB133111EBULL + 0x9E3779B97F4A7C15ULL));
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

__device__ __forceinline__ int draw(const REAL* p, int n, double u) {
    REAL acc = 0.0;
    for (int k = 0; k < n - 1; ++k) {
        acc += p[k];
        if (u < acc) return k;
    }
    return n - 1;
}

// marginal (or full-policy) action selection (cpu.select_action_one)
// lowest index within AL_TIE_TOL of the largest (engine.model.constants.TIE_TOL)
__device__ __forceinline__ int first_max(const REAL* p, int n) {
    REAL top = p[0];
    for (int k = 1; k < n; ++k) top = p[k] > top ? p[k] : top;
    for (int k = 0; k < n; ++k)
        if (p[k] >= top - (REAL)AL_TIE_TOL) return k;
    return 0;
}

__device__ __forceinline__ void select_action(const i64* __restrict__ mi, const REAL* qpi,
                                              REAL alpha, i64 flags, u64 key, i64 tick,
                                              i64* out_row) {
    REAL marg[NMARG];
    if (flags & FLAG_FULL_SAMPLING) {
        int best = 0;
        if (flags & FLAG_STOCHASTIC) {
            for (int p = 0; p < NPOL; ++p) marg[p] = log(qpi[p] + (REAL)AL_EPS) * alpha;
            softmax_into(marg, marg, 0, NPOL);
            best = draw(marg, NPOL, uniform_from_key(key, tick, 0));
        } else {
            best = first_max(qpi, NPOL);
        }
        for (int f = 0; f < NF; ++f) out_row[f] = MI(first_action)[(i64)best * NF + f];
        return;
    }
    for (int f = 0; f < NF; ++f) {
        const int n_u = (int)MI(num_controls)[f];
        for (int u = 0; u < n_u; ++u) marg[u] = 0.0;
        for (int p = 0; p < NPOL; ++p) marg[MI(first_action)[(i64)p * NF + f]] += qpi[p];
        REAL total = 0.0;
        for (int u = 0; u < n_u; ++u) total += marg[u];
        for (int u = 0; u < n_u; ++u) marg[u] /= total;
        if (flags & FLAG_STOCHASTIC) {
            for (int u = 0; u < n_u; ++u) marg[u] = log(marg[u] + (REAL)AL_EPS) * alpha;
            softmax_into(marg, marg, 0, n_u);
            out_row[f] = draw(marg, n_u, uniform_from_key(key, tick, f));
        } else {
            out_row[f] = first_max(marg, n_u);
        }
    }
}

#define FUSED_STEP_PARAMS                                                                     \
    const i64* __restrict__ mi, const double* __restrict__ mf, const i64* __restrict__ obs,  \
    STATE_T* __restrict__ qs, i64* __restrict__ prev_action,                                  \
    unsigned char* __restrict__ started, STATE_T* __restrict__ q_pi,                          \
    STATE_T* __restrict__ G_out, i64* __restrict__ actions, const u64* __restrict__ keys,     \
    i64 lo, i64 hi, i64 tick, i64 num_iter, i64 max_depth, i64 flags, double gamma,           \
    double alpha, double dF, double dF_tol

// Steps agents lo..hi-1 (rows of the per-agent arrays), one thread per agent, grid-stride.
#ifndef MIN_BLOCKS
#define MIN_BLOCKS 1
#endif
#ifdef AGENTLOOP_HOST
#define LAUNCH_BOUNDS
#else
#define LAUNCH_BOUNDS __launch_bounds__(BLOCK, MIN_BLOCKS)
#endif
extern "C" __global__ void LAUNCH_BOUNDS fused_step(FUSED_STEP_PARAMS) {
    REAL prior[STOT], post[STOT], G[NPOL], qpi[NPOL], qo[NJO];
    int touched[NJO];
    for (int o = 0; o < NJO; ++o) qo[o] = 0.0;
    const i64 stride = (i64)blockDim.x * gridDim.x;
    for (i64 i = lo + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < hi; i += stride) {
        if (started[i]) {
            for (int f = 0; f < NF; ++f) {
                const int off = (int)MI(state_offset)[f];
                apply_B(mi, mf, f, prev_action[i * NF + f], qs + i * STOT + off, prior + off);
            }
        } else {
            for (int s = 0; s < STOT; ++s) prior[s] = (REAL)MF(D_flat)[s];
        }
        infer_states(mi, mf, obs + i * NM, prior, post, num_iter, (REAL)dF, (REAL)dF_tol);
        policy_values(mi, mf, post, max_depth, flags, qo, touched, G);
        for (int p = 0; p < NPOL; ++p) qpi[p] = G[p] * (REAL)gamma + (REAL)MF(lnE)[p];
        softmax_into(qpi, qpi, 0, NPOL);
        select_action(mi, qpi, (REAL)alpha, flags, keys[i], tick, actions + i * NF);
        for (int s = 0; s < STOT; ++s) qs[i * STOT + s] = (STATE_T)post[s];
        for (int p = 0; p < NPOL; ++p) {
            G_out[i * NPOL + p] = (STATE_T)G[p];
            q_pi[i * NPOL + p] = (STATE_T)qpi[p];
        }
        for (int f = 0; f < NF; ++f) prev_action[i * NF + f] = actions[i * NF + f];
        started[i] = 1;
    }
}

#ifdef AGENTLOOP_HOST
// The host build's launcher: every (block, thread) of the launch in turn.
extern "C" void fused_step_host(i64 grid, i64 block, FUSED_STEP_PARAMS) {
    gridDim.x = grid;
    blockDim.x = block;
    for (i64 b = 0; b < grid; ++b) {
        blockIdx.x = b;
        for (i64 t = 0; t < block; ++t) {
            threadIdx.x = t;
            fused_step(mi, mf, obs, qs, prev_action, started, q_pi, G_out, actions, keys, lo,
                       hi, tick, num_iter, max_depth, flags, gamma, alpha, dF, dF_tol);
        }
    }
}
#endif
