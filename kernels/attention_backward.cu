// attention_backward.cu -- fused self-attention, causal or bidirectional with a key-padding
// mask, backward pass (FlashAttention-2 style).
//
// The forward pass (attention_forward.cu) computed, per batch b and head h,
//     s = scale * q @ k.T  (padding: s[i, j] = -inf for j >= n = lengths[b];
//                           causal: s[i, j] = -inf for j > i),
//     p = exp(s - lse[:, None]),   o = p @ v,
// and kept only o and lse. Given do = dL/do, the NumPy backward would be
//
//     dv = p.T @ do                        # (T, D)
//     dp = do @ v.T                        # (T, T)
//     Drow = (do * o).sum(-1)              # (T,)  equals (p * dp).sum(-1)
//     ds = p * (dp - Drow[:, None])        # softmax backward
//     dq = scale * ds @ k
//     dk = scale * ds.T @ q
//
// These kernels compute the same without ever storing a T x T matrix: each tile
// of p is rebuilt from q, k and lse when needed (p[i, j] = exp(scale q_i.k_j - lse_i)),
// used, and dropped. Memory stays O(T * D) per head.
//
// Three kernels, launched in this order:
//   attention_backward_preprocess  Drow[i] = sum_d do[i, d] * o[i, d]; one warp per row.
//   attention_backward_dkdv        one block per tile of BC keys. It keeps its k and v
//                                  tile in shared memory and its dk, dv sums in
//                                  registers, and walks over the query tiles that can
//                                  see those keys (from the diagonal, or from 0 when
//                                  not causal, to T; none for a tile of padding keys,
//                                  whose gradients are 0):
//                                      dv_j += sum_i p_ij do_i
//                                      dk_j += scale * sum_i ds_ij q_i
//   attention_backward_dq          one block per tile of BR queries. It walks over the
//                                  key tiles that those queries see (0 to the diagonal
//                                  or the last real key, whichever comes first):
//                                      dq_i += scale * sum_j ds_ij k_j
// Splitting dq into its own pass recomputes p and dp once more, but every output
// element is then written by exactly one thread: no atomics, and the result is
// deterministic (the same bits on every run).
//
// Work split inside a block (the tile layout of attention_common.cuh, as in the
// forward kernel): each thread owns 4 consecutive "own" rows (keys in dkdv, queries in
// dq) and 4 "other" rows strided by TX = TILE/4. It computes the 4 x 4 values of p
// and ds for those pairs, shares them through shared memory, and then accumulates
// its own rows' gradients for output columns tx*4..tx*4+3 (+ multiples of 4*TX).
//
// Compile-time parameters (minift/cuda/loader.py prepends them): HEAD_DIM = D (1..128),
// BR = BC (the tile; these kernels assume square tiles). Launches:
//   preprocess: 256 threads (8 warps, 8 rows) per block, grid ceil(B*H*T / 8).
//   dkdv: NUM_THREADS threads, grid (B*H, ceil(T/BC)) (blockIdx.x = b*H + h),
//         DKDV_SMEM_FLOATS*4 bytes of dynamic shared memory.
//   dq: NUM_THREADS threads, grid (B*H, ceil(T/BR)), DQ_SMEM_FLOATS*4 bytes.
// (attention_smem_bytes in minift/cuda/wrappers.py computes the same sizes.)

#include "attention_common.cuh"

#define TILE BC
#define DKDV_SMEM_FLOATS (4 * TILE * ROW + 2 * TILE * P_ROW + 2 * TILE)   // Ks Vs Qs dOs, Ps dSs, L D
#define DQ_SMEM_FLOATS (4 * TILE * ROW + TILE * P_ROW)                    // Qs dOs Ks Vs, dSt
#define PREPROCESS_ROWS_PER_BLOCK 8       // 256 threads = 8 warps, one row each

static_assert(BR == BC, "the backward kernels use square tiles (BR == BC)");

// Drow[i] = sum_d do[i, d] * o[i, d] for all rows = B*H*T of them.
extern "C" __global__ void __launch_bounds__(PREPROCESS_ROWS_PER_BLOCK * 32)
attention_backward_preprocess(const float* __restrict__ o, const float* __restrict__ dout,
                              float* __restrict__ drow, long long rows) {
    const long long row = (long long)blockIdx.x * PREPROCESS_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;   // the whole warp leaves together: the shuffles stay full
    float sum = 0.f;
    for (int d = lane; d < HEAD_DIM; d += 32) sum += o[row * HEAD_DIM + d] * dout[row * HEAD_DIM + d];
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) drow[row] = sum;
}

// dk, dv for one tile of TILE keys. Own rows: keys; other rows: queries.
extern "C" __global__ void __launch_bounds__(NUM_THREADS)
attention_backward_dkdv(const float* __restrict__ q, const float* __restrict__ k,
                        const float* __restrict__ v, const float* __restrict__ dout,
                        const float* __restrict__ lse, const float* __restrict__ drow,
                        float* __restrict__ dk, float* __restrict__ dv, const int* __restrict__ lengths,
                        int T, int H, int causal, float scale) {
    extern __shared__ float4 smem4[];
    float* Ks = reinterpret_cast<float*>(smem4);   // [TILE][ROW]  this block's keys
    float* Vs = Ks + TILE * ROW;                   // [TILE][ROW]  and their values
    float* Qs = Vs + TILE * ROW;                   // [TILE][ROW]  current query tile
    float* dOs = Qs + TILE * ROW;                  // [TILE][ROW]  its output gradients
    float* Ps = dOs + TILE * ROW;                  // [TILE][P_ROW] p[query][key]
    float* dSs = Ps + TILE * P_ROW;                // [TILE][P_ROW] ds[query][key]
    float* Ls = dSs + TILE * P_ROW;                // [TILE] lse of the query tile, base-2 units
    float* Ds = Ls + TILE;                         // [TILE] Drow of the query tile

    const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
    const int k0 = blockIdx.y * TILE;   // tile 0 has the most query tiles: it starts first
    const long long head = (long long)blockIdx.x * T;
    const int n_keys = lengths[blockIdx.x / H];         // keys 0 .. n_keys-1 are real
    q += head * HEAD_DIM; k += head * HEAD_DIM; v += head * HEAD_DIM; dout += head * HEAD_DIM;
    dk += head * HEAD_DIM; dv += head * HEAD_DIM; lse += head; drow += head;

    load_rows(Ks, k, k0, TILE, T);
    load_rows(Vs, v, k0, TILE, T);

    const float qk_scale = scale * LOG2E;
    float dk_acc[4][D_GROUPS * 4], dv_acc[4][D_GROUPS * 4];
    zero_acc(dk_acc);
    zero_acc(dv_acc);

    // Query tiles that see at least one of our keys: query k0 (the diagonal tile) or 0 to
    // T; none when all our keys are padding (their dk, dv stay 0).
    const int first_query = k0 >= n_keys ? T : causal ? k0 : 0;
    for (int q0 = first_query; q0 < T; q0 += TILE) {
        __syncthreads();   // the previous query tile is no longer being read
        load_rows(Qs, q, q0, TILE, T);
        load_rows(dOs, dout, q0, TILE, T);
        for (int r = threadIdx.x; r < TILE; r += NUM_THREADS) {
            Ls[r] = (q0 + r < T) ? lse[q0 + r] * LOG2E : 0.f;
            Ds[r] = (q0 + r < T) ? drow[q0 + r] : 0.f;
        }
        __syncthreads();

        float s[4][4], dp[4][4];
        tile_dots(s, Ks, Qs, ty, tx);    // s[i][j]  = k_(ty*4+i) . q_(tx+j*TX)
        tile_dots(dp, Vs, dOs, ty, tx);  // dp[i][j] = v_(ty*4+i) . do_(tx+j*TX)

#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int qr = tx + j * TX;   // query row inside the tile
            const int qi = q0 + qr;
            float p[4], ds[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int kj = k0 + ty * 4 + i;
                // p = exp(scale s - lse), zero where the query cannot see the key (a
                // padding key, kj >= n_keys, which covers kj >= T; kj > qi when causal)
                // or the query does not exist.
                const bool seen = kj < n_keys && !(causal && kj > qi) && qi < T;
                p[i] = seen ? exp2f(s[i][j] * qk_scale - Ls[qr]) : 0.f;
                ds[i] = p[i] * (dp[i][j] - Ds[qr]);
            }
            *reinterpret_cast<float4*>(Ps + qr * P_ROW + ty * 4) = make_float4(p[0], p[1], p[2], p[3]);
            *reinterpret_cast<float4*>(dSs + qr * P_ROW + ty * 4) = make_float4(ds[0], ds[1], ds[2], ds[3]);
        }
        __syncthreads();

        const int queries_here = min(TILE, T - q0);
        accumulate(dv_acc, Ps, dOs, queries_here, ty, tx);   // dv_j += sum_i p_ij do_i
        accumulate(dk_acc, dSs, Qs, queries_here, ty, tx);   // dk_j += sum_i ds_ij q_i
    }

    store_rows(dk, dk_acc, scale, k0, T, ty, tx);
    store_rows(dv, dv_acc, 1.f, k0, T, ty, tx);
}

// dq for one tile of TILE queries. Own rows: queries; other rows: keys.
extern "C" __global__ void __launch_bounds__(NUM_THREADS)
attention_backward_dq(const float* __restrict__ q, const float* __restrict__ k,
                      const float* __restrict__ v, const float* __restrict__ dout,
                      const float* __restrict__ lse, const float* __restrict__ drow,
                      float* __restrict__ dq, const int* __restrict__ lengths, int T, int H, int causal,
                      float scale) {
    extern __shared__ float4 smem4[];
    float* Qs = reinterpret_cast<float*>(smem4);   // [TILE][ROW]  this block's queries
    float* dOs = Qs + TILE * ROW;                  // [TILE][ROW]  their output gradients
    float* Ks = dOs + TILE * ROW;                  // [TILE][ROW]  current key tile
    float* Vs = Ks + TILE * ROW;                   // [TILE][ROW]  its values
    float* dSt = Vs + TILE * ROW;                  // [TILE][P_ROW] ds[key][query]

    const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * TILE;   // longest rows first
    const long long head = (long long)blockIdx.x * T;
    const int n_keys = lengths[blockIdx.x / H];         // keys 0 .. n_keys-1 are real
    q += head * HEAD_DIM; k += head * HEAD_DIM; v += head * HEAD_DIM; dout += head * HEAD_DIM;
    dq += head * HEAD_DIM; lse += head; drow += head;

    load_rows(Qs, q, q0, TILE, T);
    load_rows(dOs, dout, q0, TILE, T);

    const float qk_scale = scale * LOG2E;
    float L[4], D[4];   // lse (base 2) and Drow of the thread's 4 queries
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int qi = q0 + ty * 4 + i;
        L[i] = (qi < T) ? lse[qi] * LOG2E : 0.f;
        D[i] = (qi < T) ? drow[qi] : 0.f;
    }
    float dq_acc[4][D_GROUPS * 4];
    zero_acc(dq_acc);

    // Key tiles up to the last visible key: the last real key, and when causal no
    // later than the last query of this tile.
    const int last_key = causal ? min(min(q0 + TILE, T), n_keys) - 1 : n_keys - 1;
    for (int k0 = 0; k0 <= last_key; k0 += TILE) {
        __syncthreads();   // the previous key tile is no longer being read
        load_rows(Ks, k, k0, TILE, T);
        load_rows(Vs, v, k0, TILE, T);
        __syncthreads();

        float s[4][4], dp[4][4];
        tile_dots(s, Qs, Ks, ty, tx);    // s[i][j]  = q_(ty*4+i) . k_(tx+j*TX)
        tile_dots(dp, dOs, Vs, ty, tx);  // dp[i][j] = do_(ty*4+i) . v_(tx+j*TX)

#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int kr = tx + j * TX;   // key row inside the tile
            const int kj = k0 + kr;
            float ds[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int qi = q0 + ty * 4 + i;
                const bool seen = kj < n_keys && !(causal && kj > qi) && qi < T;
                const float p = seen ? exp2f(s[i][j] * qk_scale - L[i]) : 0.f;
                ds[i] = p * (dp[i][j] - D[i]);
            }
            *reinterpret_cast<float4*>(dSt + kr * P_ROW + ty * 4) = make_float4(ds[0], ds[1], ds[2], ds[3]);
        }
        __syncthreads();

        accumulate(dq_acc, dSt, Ks, min(TILE, n_keys - k0), ty, tx);   // dq_i += sum_j ds_ij k_j
    }

    store_rows(dq, dq_acc, scale, q0, T, ty, tx);
}
