// attention_common.cuh -- what attention_forward.cu and attention_backward.cu share:
// the tile geometry, and the device helpers that move tiles between global memory,
// shared memory and registers.
//
// It is not compiled on its own, and no compiler searches a folder for it: minift's
// loader (minift/cuda/loader.py) pastes this text in place of the line that includes
// it in each attention file, between #line directives (so error messages still name
// this file and line). CuPy's compile cache is keyed by the source text, which then
// holds this header too: editing it recompiles both files.
//
// The tiles. Both kernels hold tiles of rows of (T, HEAD_DIM) matrices (q, k, v, do)
// in shared memory, one row every ROW floats, and run (BR/4) x (BC/4) threads per
// block. Thread (ty, tx) owns
//   * 4 consecutive "own" rows of its tile, ty*4 .. ty*4+3 (queries in the forward
//     kernel and in dq, keys in dkdv), and meets them with 4 "other" rows strided by
//     TX = BC/4: tx, tx+TX, tx+2TX, tx+3TX (strided so that neighbouring threads read
//     neighbouring shared-memory rows, which the memory banks serve without conflict);
//   * the output columns tx*4 .. tx*4+3 of its own rows, plus the same columns shifted
//     by 4*TX, 8*TX, ... when HEAD_DIM > 4*TX (D_GROUPS groups of 4 columns).
// A 4 x 4 block of scores (or probabilities, or their gradients) per thread goes
// through shared memory as a tile stored [other row][own row], P_ROW floats a row, so
// that each thread can then multiply its own rows by a whole tile.
//
// Compile-time parameters (the loader prepends them): HEAD_DIM = D (1..128), BR and
// BC (tile sizes, multiples of 4, with BC/4 a power of two <= 32).

#ifndef MINIFT_ATTENTION_COMMON_CUH
#define MINIFT_ATTENTION_COMMON_CUH

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef BR
#define BR 64    // own rows per block (queries in the forward kernel)
#endif
#ifndef BC
#define BC 64    // other rows per tile (keys in the forward kernel)
#endif

#define TX (BC / 4)                       // threads along the other rows of a tile
#define TY (BR / 4)                       // threads along the own rows
#define NUM_THREADS (TX * TY)
#define D4 (((HEAD_DIM) + 3) / 4 * 4)     // D rounded up to whole float4s
#define D_GROUPS (((HEAD_DIM) + 4 * TX - 1) / (4 * TX))   // output column groups per thread
#define D_COVER (D_GROUPS * 4 * TX)       // columns covered by all threads' groups (>= D)
#define ROW (D_COVER + 4)                 // row stride of q, k, v, do tiles (+4: no bank conflicts)
#define P_ROW (BR + 4)                    // row stride of a [other][own] tile (p, ds)

#define LOG2E 1.4426950408889634f

static_assert(HEAD_DIM >= 1 && HEAD_DIM <= 128, "HEAD_DIM must be in 1..128");
static_assert(BR % 4 == 0 && BC % 4 == 0, "BR and BC must be multiples of 4");
static_assert(TX <= 32 && (32 % TX) == 0, "BC/4 must be a power of two <= 32 (row reductions are warp shuffles)");
static_assert(NUM_THREADS % 32 == 0, "the block must be whole warps (the shuffles use all 32 lanes)");

__device__ __forceinline__ float dot4(float4 a, float4 b) {
    return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
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

// x[i][j] = (row ty*4+i of A) . (row tx+j*TX of B) over the head dimension, for
// A, B tiles in shared memory with row stride ROW: the thread's 4 x 4 scores.
__device__ __forceinline__ void tile_dots(float x[4][4], const float* A, const float* B,
                                          int ty, int tx) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) x[i][j] = 0.f;
#pragma unroll 2
    for (int d = 0; d < D4; d += 4) {
        float4 a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = *reinterpret_cast<const float4*>(A + (ty * 4 + i) * ROW + d);
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = *reinterpret_cast<const float4*>(B + (tx + j * TX) * ROW + d);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) x[i][j] += dot4(a[i], b[j]);
    }
}

__device__ __forceinline__ void zero_acc(float acc[4][D_GROUPS * 4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int c = 0; c < D_GROUPS * 4; ++c) acc[i][c] = 0.f;
}

// acc[i][cols] += sum_r W[r][ty*4+i] * X[r][cols] over the rows r < nrows of the tile:
// W is a p or ds tile stored [other][own] (row stride P_ROW), X a q/k/v/do tile (row
// stride ROW); cols are the thread's output columns g*4*TX + tx*4 + 0..3.
__device__ __forceinline__ void accumulate(float acc[4][D_GROUPS * 4], const float* W,
                                           const float* X, int nrows, int ty, int tx) {
    for (int r = 0; r < nrows; ++r) {
        const float4 w = *reinterpret_cast<const float4*>(W + r * P_ROW + ty * 4);
        const float wr[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int g = 0; g < D_GROUPS; ++g) {
            const float4 x = *reinterpret_cast<const float4*>(X + r * ROW + g * 4 * TX + tx * 4);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                acc[i][g * 4 + 0] = fmaf(wr[i], x.x, acc[i][g * 4 + 0]);
                acc[i][g * 4 + 1] = fmaf(wr[i], x.y, acc[i][g * 4 + 1]);
                acc[i][g * 4 + 2] = fmaf(wr[i], x.z, acc[i][g * 4 + 2]);
                acc[i][g * 4 + 3] = fmaf(wr[i], x.w, acc[i][g * 4 + 3]);
            }
        }
    }
}

// Writes factor * acc for the thread's own rows r0 + ty*4 + i < T of a (T, HEAD_DIM)
// matrix, in its output columns.
__device__ __forceinline__ void store_rows(float* __restrict__ dst, const float acc[4][D_GROUPS * 4],
                                           float factor, int r0, int T, int ty, int tx) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int r = r0 + ty * 4 + i;
        if (r >= T) continue;
#pragma unroll
        for (int g = 0; g < D_GROUPS; ++g) {
            const int d = g * 4 * TX + tx * 4;
            float* out = dst + (long long)r * HEAD_DIM + d;
            if (HEAD_DIM % 4 == 0) {
                if (d < HEAD_DIM)
                    *reinterpret_cast<float4*>(out) =
                        make_float4(factor * acc[i][g * 4 + 0], factor * acc[i][g * 4 + 1],
                                    factor * acc[i][g * 4 + 2], factor * acc[i][g * 4 + 3]);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (d + e < HEAD_DIM) out[e] = factor * acc[i][g * 4 + e];
            }
        }
    }
}

#endif  // MINIFT_ATTENTION_COMMON_CUH
