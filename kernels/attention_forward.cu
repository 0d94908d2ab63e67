// attention_forward.cu -- fused self-attention, causal or bidirectional with a key-padding
// mask, forward pass (FlashAttention-2 style).
//
// What it computes, in NumPy terms, for every batch b and head h (q, k, v of shape
// (B, H, T, D), float32, C-contiguous; scale = 1/sqrt(D); n = lengths[b], the real keys
// of sequence b, 1..T):
//
//     s   = scale * q[b, h] @ k[b, h].T                 # (T, T) scores
//     s[:, j >= n] = -inf                               # padding: no query sees keys n..T-1
//     s[j > i] = -inf          (when causal)            # causal: query i sees keys 0..i
//     lse = log(sum(exp(s), axis=-1))                   # (T,)  log-sum-exp of each row
//     o[b, h] = exp(s - lse[:, None]) @ v[b, h]         # (T, D) softmax(s) @ v
//
// and it returns o and lse (the backward pass rebuilds the softmax from lse). A GPT
// runs it causal with n = T; an encoder not causal, with each sequence's length.
//
// The NumPy version materialises the T x T matrix s. This kernel never does: its
// memory is O(T * D) per head, and each score lives only in registers.
//
// The algorithm ("online softmax"). One block owns BR consecutive queries of one
// (b, h). It walks over the keys in tiles of BC, loading each K tile and V tile
// into shared memory once for all BR queries. For each query row it keeps
//     m = the largest score seen so far,
//     l = sum over seen keys of exp(s - m),
//     acc = sum over seen keys of exp(s - m) * v_j      (a D-vector),
// and when a new tile raises the maximum from m to m', the old sums are rescaled
// by exp(m - m') before the new terms are added. After the last tile,
// o = acc / l and lse = m + log(l): the same numbers as the NumPy version, up to
// rounding. Tiles entirely above the diagonal (all keys later than all queries of
// the block) are never loaded: that halves the work of causal attention; nor are
// tiles made only of padding keys.
//
// Work split inside a block (the tile layout of attention_common.cuh): (BR/4) x (BC/4)
// threads. Thread (ty, tx) owns
//   * the scores of queries ty*4 .. ty*4+3 against keys tx, tx+TX, tx+2TX, tx+3TX
//     (keys strided by TX = BC/4 so that neighbouring threads read neighbouring K
//     rows from shared memory, which the memory banks serve without conflict);
//   * the output columns tx*4 .. tx*4+3 of those 4 queries (plus the same columns
//     shifted by 4*TX, 8*TX, ... when D > 4*TX).
// The TX threads that share a query row sit in consecutive lanes of one warp, so
// the row max and row sum are warp shuffles, not shared-memory round trips.
// The probabilities P of a tile go through shared memory (transposed, Pt[key][query])
// so that each thread can multiply the rows of P it owns by all of V's tile.
//
// Exponentials are base 2 (exp2f is one hardware instruction): scores are
// multiplied by scale*log2(e), so m and l are in base 2 until the final
// lse = m*ln(2) + ln(l), which is in natural-log units like the NumPy version.
//
// Compile-time parameters (minift/cuda/loader.py prepends them): HEAD_DIM = D (any
// 1..128; the kernel is compiled once per head size), BR, BC (tile sizes, multiples
// of 4 with BC/4 a power of two <= 32). Launch: NUM_THREADS threads per block,
// grid (B*H, ceil(T/BR)) (blockIdx.x = b*H + h), and SMEM_FLOATS*4 bytes of dynamic shared memory
// (attention_smem_bytes in minift/cuda/wrappers.py computes the same number: keep
// the two in step).

#include "attention_common.cuh"

#define SMEM_FLOATS (BR * ROW + 2 * BC * ROW + BC * P_ROW)   // Qs, Ks, Vs, Pt
#define LN2 0.6931471805599453f

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// Reductions over the TX consecutive lanes that share a query row.
__device__ __forceinline__ float row_max(float x) {
#pragma unroll
    for (int offset = TX / 2; offset > 0; offset /= 2)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}
__device__ __forceinline__ float row_sum(float x) {
#pragma unroll
    for (int offset = TX / 2; offset > 0; offset /= 2)
        x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

extern "C" __global__ void __launch_bounds__(NUM_THREADS)
attention_forward(const float* __restrict__ q, const float* __restrict__ k,
                  const float* __restrict__ v, float* __restrict__ o, float* __restrict__ lse,
                  const int* __restrict__ lengths, int T, int H, int causal, float scale) {
    extern __shared__ float4 smem4[];          // declared as float4 for 16-byte alignment
    float* Qs = reinterpret_cast<float*>(smem4);   // [BR][ROW]  this block's queries
    float* Ks = Qs + BR * ROW;                     // [BC][ROW]  current key tile
    float* Vs = Ks + BC * ROW;                     // [BC][ROW]  current value tile
    float* Pt = Vs + BC * ROW;                     // [BC][P_ROW] probabilities, transposed

    const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
    // blockIdx.y counts down so that the query tiles with the most keys (the last
    // ones) start first and the short ones fill the gaps at the end.
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BR;
    const long long head = (long long)blockIdx.x * T;   // first row of this (b, h)
    const int n_keys = lengths[blockIdx.x / H];         // keys 0 .. n_keys-1 are real
    q += head * HEAD_DIM; k += head * HEAD_DIM; v += head * HEAD_DIM;
    o += head * HEAD_DIM; lse += head;

    load_rows(Qs, q, q0, BR, T);

    const float qk_scale = scale * LOG2E;   // scores in base-2 units
    float m[4], l[4], acc[4][D_GROUPS * 4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        m[i] = neg_inf();
        l[i] = 0.f;
    }
    zero_acc(acc);

    // Key tiles 0 .. the one holding the last visible key: the last real key, and
    // when causal no later than the last query of this block.
    const int last_key = causal ? min(min(q0 + BR, T), n_keys) - 1 : n_keys - 1;
    const int num_tiles = (last_key + BC) / BC;   // 0 when no key is visible (last_key = -1)
    for (int t = 0; t < num_tiles; ++t) {
        const int k0 = t * BC;
        __syncthreads();   // the previous tile's Ks, Vs, Pt are no longer being read
        load_rows(Ks, k, k0, BC, T);
        load_rows(Vs, v, k0, BC, T);
        __syncthreads();

        float s[4][4];
        tile_dots(s, Qs, Ks, ty, tx);   // s[i][j] = q_(ty*4+i) . k_(tx+j*TX)

        // Padding and causal mask and online-softmax update, one query row at a time.
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int qi = q0 + ty * 4 + i;
            float tile_max = neg_inf();
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int kj = k0 + tx + j * TX;
                s[i][j] = (kj >= n_keys || (causal && kj > qi)) ? neg_inf() : s[i][j] * qk_scale;
                tile_max = fmaxf(tile_max, s[i][j]);
            }
            const float m_new = fmaxf(m[i], row_max(tile_max));
            // A row with no visible key yet keeps m = -inf; subtract 0 then, not -inf
            // (-inf - -inf would be NaN). Key 0 is visible to every query of a sequence
            // with keys, so this only matters for rows past T, whose results are discarded.
            const float m_ref = (m_new == neg_inf()) ? 0.f : m_new;
            const float correction = exp2f(m[i] - m_ref);   // rescales the old sums
            float tile_sum = 0.f;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                s[i][j] = exp2f(s[i][j] - m_ref);   // s now holds p (0 where masked)
                tile_sum += s[i][j];
            }
            l[i] = l[i] * correction + row_sum(tile_sum);
            m[i] = m_new;
#pragma unroll
            for (int c = 0; c < D_GROUPS * 4; ++c) acc[i][c] *= correction;
        }

        // Share p through shared memory: Pt[key][query], the 4 queries as one float4.
#pragma unroll
        for (int j = 0; j < 4; ++j)
            *reinterpret_cast<float4*>(Pt + (tx + j * TX) * P_ROW + ty * 4) =
                make_float4(s[0][j], s[1][j], s[2][j], s[3][j]);
        __syncthreads();

        // acc += p @ v for the thread's 4 queries and its output columns; padding keys
        // (and keys past T) have p = 0: skip them.
        accumulate(acc, Pt, Vs, min(BC, n_keys - k0), ty, tx);
    }

    // o = acc / l and lse = m ln2 + ln l, for the rows that exist. A row that saw no key
    // has l = 0: a sequence of 0 keys (the wrappers refuse lengths < 1, but the kernel
    // does not rely on it) gets o = 0 and lse = -inf, not 0/0 = NaN.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float inv_l = l[i] > 0.f ? 1.f / l[i] : 0.f;
#pragma unroll
        for (int c = 0; c < D_GROUPS * 4; ++c) acc[i][c] *= inv_l;
        const int qi = q0 + ty * 4 + i;
        if (tx == 0 && qi < T) lse[qi] = l[i] > 0.f ? m[i] * LN2 + logf(l[i]) : neg_inf();
    }
    store_rows(o, acc, 1.f, q0, T, ty, tx);
}
