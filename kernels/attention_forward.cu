// attention_forward.cu -- fused causal self-attention, forward pass (FlashAttention-2 style).
//
// What it computes, in NumPy terms, for every batch b and head h (q, k, v of shape
// (B, H, T, D), float32, C-contiguous; scale = 1/sqrt(D)):
//
//     s   = scale * q[b, h] @ k[b, h].T                 # (T, T) scores
//     s[j > i] = -inf                                   # causal: query i sees keys 0..i
//     lse = log(sum(exp(s), axis=-1))                   # (T,)  log-sum-exp of each row
//     o[b, h] = exp(s - lse[:, None]) @ v[b, h]         # (T, D) softmax(s) @ v
//
// and it returns o and lse (the backward pass rebuilds the softmax from lse).
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
// the block) are never loaded: that halves the work of causal attention.
//
// Work split inside a block: (BR/4) x (BC/4) threads. Thread (ty, tx) owns
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
// Compile-time parameters (minift/kernels.py prepends them): HEAD_DIM = D (any
// 1..128; the kernel is compiled once per head size), BR, BC (tile sizes, multiples
// of 4 with BC/4 a power of two <= 32). Launch: NUM_THREADS threads per block,
// grid (B*H, ceil(T/BR)), and SMEM_FLOATS*4 bytes of dynamic shared memory
// (minift/kernels.py computes the same number: keep the two in step).

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef BR
#define BR 64    // queries per block
#endif
#ifndef BC
#define BC 64    // keys per tile
#endif

#define TX (BC / 4)                       // threads along the keys of a tile
#define TY (BR / 4)                       // threads along the queries of a block
#define NUM_THREADS (TX * TY)
#define D4 (((HEAD_DIM) + 3) / 4 * 4)     // D rounded up to whole float4s
#define D_GROUPS (((HEAD_DIM) + 4 * TX - 1) / (4 * TX))   // output column groups per thread
#define D_COVER (D_GROUPS * 4 * TX)       // columns covered by all threads' groups (>= D)
#define ROW (D_COVER + 4)                 // shared-memory row stride in floats (+4: no bank conflicts)
#define PT_ROW (BR + 4)                   // row stride of Pt[key][query]
#define SMEM_FLOATS (BR * ROW + 2 * BC * ROW + BC * PT_ROW)   // Qs, Ks, Vs, Pt

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

static_assert(HEAD_DIM >= 1 && HEAD_DIM <= 128, "HEAD_DIM must be in 1..128");
static_assert(BR % 4 == 0 && BC % 4 == 0, "BR and BC must be multiples of 4");
static_assert(TX <= 32 && (32 % TX) == 0, "BC/4 must be a power of two <= 32 (row reductions are warp shuffles)");
static_assert(NUM_THREADS % 32 == 0, "the block must be whole warps (the shuffles use all 32 lanes)");

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

// Copies rows r0 .. r0+nrows-1 of a (T, HEAD_DIM) matrix into dst[nrows][ROW].
// Rows past T and columns past HEAD_DIM (up to D_COVER) are filled with zeros,
// so later loops can run over whole tiles without bounds checks.
__device__ __forceinline__ void load_rows(float* dst, const float* __restrict__ src, int r0,
                                          int nrows, int T) {
    if (HEAD_DIM % 4 == 0) {   // float4 path: rows are 16-byte aligned
        const int groups_per_row = D_COVER / 4;
        for (int g = threadIdx.x; g < nrows * groups_per_row; g += NUM_THREADS) {
            const int r = g / groups_per_row, c = (g % groups_per_row) * 4;
            float4 val = make_float4(0.f, 0.f, 0.f, 0.f);
            if (r0 + r < T && c < HEAD_DIM)
                val = *reinterpret_cast<const float4*>(src + (long long)(r0 + r) * HEAD_DIM + c);
            *reinterpret_cast<float4*>(dst + r * ROW + c) = val;
        }
    } else {
        for (int e = threadIdx.x; e < nrows * D_COVER; e += NUM_THREADS) {
            const int r = e / D_COVER, c = e % D_COVER;
            dst[r * ROW + c] = (r0 + r < T && c < HEAD_DIM) ? src[(long long)(r0 + r) * HEAD_DIM + c] : 0.f;
        }
    }
}

__device__ __forceinline__ float dot4(float4 a, float4 b) {
    return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

extern "C" __global__ void __launch_bounds__(NUM_THREADS)
attention_forward(const float* __restrict__ q, const float* __restrict__ k,
                  const float* __restrict__ v, float* __restrict__ o, float* __restrict__ lse,
                  int T, float scale) {
    extern __shared__ float4 smem4[];          // declared as float4 for 16-byte alignment
    float* Qs = reinterpret_cast<float*>(smem4);   // [BR][ROW]  this block's queries
    float* Ks = Qs + BR * ROW;                     // [BC][ROW]  current key tile
    float* Vs = Ks + BC * ROW;                     // [BC][ROW]  current value tile
    float* Pt = Vs + BC * ROW;                     // [BC][PT_ROW] probabilities, transposed

    const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
    // blockIdx.y counts down so that the query tiles with the most keys (the last
    // ones) start first and the short ones fill the gaps at the end.
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BR;
    const long long head = (long long)blockIdx.x * T;   // first row of this (b, h)
    q += head * HEAD_DIM; k += head * HEAD_DIM; v += head * HEAD_DIM;
    o += head * HEAD_DIM; lse += head;

    load_rows(Qs, q, q0, BR, T);

    const float qk_scale = scale * LOG2E;   // scores in base-2 units
    float m[4], l[4], acc[4][D_GROUPS * 4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        m[i] = neg_inf();
        l[i] = 0.f;
#pragma unroll
        for (int c = 0; c < D_GROUPS * 4; ++c) acc[i][c] = 0.f;
    }

    // Key tiles 0 .. the one holding the last query of this block (causal).
    const int last_query = min(q0 + BR, T) - 1;
    const int num_tiles = last_query / BC + 1;
    for (int t = 0; t < num_tiles; ++t) {
        const int k0 = t * BC;
        __syncthreads();   // the previous tile's Ks, Vs, Pt are no longer being read
        load_rows(Ks, k, k0, BC, T);
        load_rows(Vs, v, k0, BC, T);
        __syncthreads();

        // s = q . k for the thread's 4 queries x 4 keys.
        float s[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) s[i][j] = 0.f;
#pragma unroll 2
        for (int d = 0; d < D4; d += 4) {
            float4 qv[4], kv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) qv[i] = *reinterpret_cast<const float4*>(Qs + (ty * 4 + i) * ROW + d);
#pragma unroll
            for (int j = 0; j < 4; ++j) kv[j] = *reinterpret_cast<const float4*>(Ks + (tx + j * TX) * ROW + d);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) s[i][j] += dot4(qv[i], kv[j]);
        }

        // Causal mask and online-softmax update, one query row at a time.
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int qi = q0 + ty * 4 + i;
            float tile_max = neg_inf();
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int kj = k0 + tx + j * TX;
                s[i][j] = (kj > qi || kj >= T) ? neg_inf() : s[i][j] * qk_scale;
                tile_max = fmaxf(tile_max, s[i][j]);
            }
            const float m_new = fmaxf(m[i], row_max(tile_max));
            // A row with no visible key yet keeps m = -inf; subtract 0 then, not -inf
            // (-inf - -inf would be NaN). Key 0 is visible to every query, so this only
            // matters for rows past T, whose results are discarded.
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
            *reinterpret_cast<float4*>(Pt + (tx + j * TX) * PT_ROW + ty * 4) =
                make_float4(s[0][j], s[1][j], s[2][j], s[3][j]);
        __syncthreads();

        // acc += p @ v for the thread's 4 queries and its output columns.
        const int keys_here = min(BC, T - k0);   // keys past T have p = 0: skip them
        for (int j = 0; j < keys_here; ++j) {
            const float4 p = *reinterpret_cast<const float4*>(Pt + j * PT_ROW + ty * 4);
            const float pr[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
            for (int g = 0; g < D_GROUPS; ++g) {
                const float4 vv = *reinterpret_cast<const float4*>(Vs + j * ROW + g * 4 * TX + tx * 4);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    acc[i][g * 4 + 0] = fmaf(pr[i], vv.x, acc[i][g * 4 + 0]);
                    acc[i][g * 4 + 1] = fmaf(pr[i], vv.y, acc[i][g * 4 + 1]);
                    acc[i][g * 4 + 2] = fmaf(pr[i], vv.z, acc[i][g * 4 + 2]);
                    acc[i][g * 4 + 3] = fmaf(pr[i], vv.w, acc[i][g * 4 + 3]);
                }
            }
        }
    }

    // o = acc / l, lse = m ln2 + ln l, for the rows and columns that exist.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int qi = q0 + ty * 4 + i;
        if (qi >= T) continue;
        const float inv_l = 1.f / l[i];
#pragma unroll
        for (int g = 0; g < D_GROUPS; ++g) {
            const int d = g * 4 * TX + tx * 4;
            float* dst = o + (long long)qi * HEAD_DIM + d;
            if (HEAD_DIM % 4 == 0) {
                if (d < HEAD_DIM)
                    *reinterpret_cast<float4*>(dst) =
                        make_float4(acc[i][g * 4 + 0] * inv_l, acc[i][g * 4 + 1] * inv_l,
                                    acc[i][g * 4 + 2] * inv_l, acc[i][g * 4 + 3] * inv_l);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (d + e < HEAD_DIM) dst[e] = acc[i][g * 4 + e] * inv_l;
            }
        }
        if (tx == 0) lse[qi] = m[i] * LN2 + logf(l[i]);
    }
}
