// matmul.cu -- single-precision matrix multiply (SGEMM) for minift.
//
// What it computes, in NumPy terms, for every batch index z:
//
//     C[z] = alpha * (opA(A[z]) @ opB(B[z])) + beta * C[z]
//
// where opA(A) is A or A.T, opB(B) is B or B.T, every matrix is float32 and
// row-major (C-contiguous), opA(A) is (M, K), opB(B) is (K, N) and C is (M, N).
// The four entry points at the bottom pick the transposes:
//     sgemm_nn: A @ B      sgemm_nt: A @ B.T      sgemm_tn: A.T @ B     sgemm_tt: A.T @ B.T
// The backward pass of y = x @ w needs exactly these: dx = g @ w.T, dw = x.T @ g.
// A batch stride of 0 makes every batch element read the same matrix (broadcast).
// beta = 1 adds into C (gradient accumulation); beta = 0 never reads C.
//
// The algorithm. The naive kernel (one thread per C element, K loads of A and of
// B from global memory each) is limited by memory traffic, not arithmetic. Three
// ideas fix that, each one reusing a loaded number more often:
//
// 1. Block tiling. A block of threads owns a BM x BN tile of C. It walks along K
//    in slices of BK: the BM x BK slice of A and the BK x BN slice of B are copied
//    into shared memory once, then every thread of the block reads them from there.
//
// 2. Register tiling. Each thread computes TM x TN outputs (8 x 8 by default) held
//    in registers. For each k of the slice it reads TM numbers of A and TN numbers
//    of B from shared memory and does TM*TN multiply-adds: an outer product.
//    64 FMAs per 16 shared-memory reads instead of 1 per 2.
//
// 3. Latency hiding. Shared memory holds two copies of each slice (double
//    buffering): while the threads compute on slice t, the loads of slice t+1
//    from global memory are already in flight into registers; they are written to
//    the other buffer afterwards, so one __syncthreads per slice suffices.
//
// Layout details that matter for speed:
// * The A slice is stored transposed in shared memory, As[k][m], like B's
//   Bs[k][n]: a thread's TM values of A for one k are then contiguous and come in
//   as float4 loads.
// * A thread's TM rows are not contiguous: they are TM/4 groups of 4 rows, the
//   groups BM/(TM/4) apart (likewise for columns). Neighbouring threads then read
//   neighbouring float4s, which the shared-memory banks serve without conflicts.
// * Each shared-memory row is padded by 4 floats, so the transposing stores of an
//   A slice (thread i writes column i) also spread over the banks.
// * Global loads use float4 (16 bytes) when the leading dimension is a multiple
//   of 4 and the pointer is 16-byte aligned, else 4 scalar loads. Elements
//   outside the matrix load as 0, so any M, N, K works, not only tile multiples.
//
// Tile sizes are #defines that minift/kernels.py prepends; the defaults below are
// the "large" configuration (128 x 128 x 8 tile, 8 x 8 per thread, 256 threads).
// The launch must use (BM/TM)*(BN/TN) threads per block and a grid of
// (ceil(N/BN), ceil(M/BM), batch).

#ifndef BM
#define BM 128   // rows of C per block
#endif
#ifndef BN
#define BN 128   // columns of C per block
#endif
#ifndef BK
#define BK 8     // depth of one K slice
#endif
#ifndef TM
#define TM 8     // rows of C per thread
#endif
#ifndef TN
#define TN 8     // columns of C per thread
#endif

#define THREADS_X (BN / TN)                 // threads along a row of the tile
#define THREADS_Y (BM / TM)                 // threads along a column of the tile
#define NUM_THREADS (THREADS_X * THREADS_Y)
#define SMEM_PAD 4                          // floats of padding per shared-memory row

static_assert(TM % 4 == 0 && TN % 4 == 0, "TM and TN must be multiples of 4 (float4 fragments)");
static_assert(BM % TM == 0 && BN % TN == 0, "BM, BN must be multiples of TM, TN");
static_assert(BK % 4 == 0 && BM % 4 == 0 && BN % 4 == 0, "BM, BN, BK must be multiples of 4");

// Four consecutive floats p[row*ld + col .. col+3] of a rows x cols matrix; entries
// outside the matrix read as 0. `vec_ok` says float4 loads are allowed (ld % 4 == 0
// and p 16-byte aligned; col is always a multiple of 4 here).
__device__ __forceinline__ float4 load4(const float* __restrict__ p, int ld, int row, int col,
                                        int rows, int cols, bool vec_ok) {
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (row >= rows) return v;
    const float* src = p + (long long)row * ld + col;
    if (vec_ok && col + 3 < cols) return *reinterpret_cast<const float4*>(src);
    if (col + 0 < cols) v.x = src[0];
    if (col + 1 < cols) v.y = src[1];
    if (col + 2 < cols) v.z = src[2];
    if (col + 3 < cols) v.w = src[3];
    return v;
}

// Moves one OUTER x BK slice of an operand from global memory into shared memory,
// stored k-major: smem[k][o]. OUTER is BM for A (o = a row of C) or BN for B
// (o = a column of C). K_CONTIG says how the operand lies in memory:
//   K_CONTIG:  element (o, k) is at p[o*ld + k]  (A not transposed, B transposed)
//   otherwise: element (o, k) is at p[k*ld + o]  (A transposed, B not transposed)
// Loads run along the contiguous direction in float4s; load() fills registers,
// store() later writes them to shared memory (the double-buffering split).
template <int OUTER, bool K_CONTIG>
struct SliceLoader {
    static constexpr int GROUPS = OUTER * BK / 4;   // float4 groups in one slice
    static constexpr int PER_THREAD = (GROUPS + NUM_THREADS - 1) / NUM_THREADS;
    float4 reg[PER_THREAD];

    // Position (o, k) of the first element of group g; its 4 elements run along
    // k when K_CONTIG, along o otherwise.
    __device__ __forceinline__ static void group_origin(int g, int& o, int& k) {
        if (K_CONTIG) { o = g / (BK / 4);    k = (g % (BK / 4)) * 4; }
        else          { k = g / (OUTER / 4); o = (g % (OUTER / 4)) * 4; }
    }

    __device__ __forceinline__ void load(const float* __restrict__ p, int ld, int outer_size,
                                         int k_size, int o0, int k0, bool vec_ok) {
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            const int g = threadIdx.x + i * NUM_THREADS;
            reg[i] = make_float4(0.f, 0.f, 0.f, 0.f);
            if (GROUPS % NUM_THREADS != 0 && g >= GROUPS) continue;
            int o, k;
            group_origin(g, o, k);
            reg[i] = K_CONTIG ? load4(p, ld, o0 + o, k0 + k, outer_size, k_size, vec_ok)
                              : load4(p, ld, k0 + k, o0 + o, k_size, outer_size, vec_ok);
        }
    }

    __device__ __forceinline__ void store(float (*smem)[OUTER + SMEM_PAD]) const {
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            const int g = threadIdx.x + i * NUM_THREADS;
            if (GROUPS % NUM_THREADS != 0 && g >= GROUPS) continue;
            int o, k;
            group_origin(g, o, k);
            if (K_CONTIG) {   // 4 values along k: a transposing store, one per row
                smem[k + 0][o] = reg[i].x;
                smem[k + 1][o] = reg[i].y;
                smem[k + 2][o] = reg[i].z;
                smem[k + 3][o] = reg[i].w;
            } else {          // 4 values along o: already in smem's order
                *reinterpret_cast<float4*>(&smem[k][o]) = reg[i];
            }
        }
    }
};

template <bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void sgemm(const float* __restrict__ A, const float* __restrict__ B,
                                      float* __restrict__ C, int M, int N, int K,
                                      long long stride_a, long long stride_b, long long stride_c,
                                      float alpha, float beta) {
    // Two buffers of each slice; [k][m] and [k][n], rows padded (see the header).
    alignas(16) __shared__ float As[2][BK][BM + SMEM_PAD];
    alignas(16) __shared__ float Bs[2][BK][BN + SMEM_PAD];

    const int tx = threadIdx.x % THREADS_X;   // which column group of the tile
    const int ty = threadIdx.x / THREADS_X;   // which row group of the tile
    const int m0 = blockIdx.y * BM;           // first row of C of this block
    const int n0 = blockIdx.x * BN;           // first column of C of this block
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;

    // Leading dimensions as stored: A is (M,K) or, transposed, (K,M); B is (K,N) or (N,K).
    const int lda = TRANS_A ? M : K;
    const int ldb = TRANS_B ? K : N;
    const bool vec_a = (lda % 4 == 0) && ((unsigned long long)A % 16 == 0);
    const bool vec_b = (ldb % 4 == 0) && ((unsigned long long)B % 16 == 0);
    const bool vec_c = (N % 4 == 0) && ((unsigned long long)C % 16 == 0);

    SliceLoader<BM, !TRANS_A> load_a;
    SliceLoader<BN, TRANS_B> load_b;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    const int num_slices = (K + BK - 1) / BK;
    if (num_slices > 0) {
        load_a.load(A, lda, M, K, m0, 0, vec_a);
        load_b.load(B, ldb, N, K, n0, 0, vec_b);
        load_a.store(As[0]);
        load_b.store(Bs[0]);
    }
    __syncthreads();

    for (int t = 0; t < num_slices; ++t) {
        const int cur = t & 1;
        const bool has_next = t + 1 < num_slices;
        // Start fetching slice t+1 into registers; its latency hides behind the math.
        if (has_next) {
            load_a.load(A, lda, M, K, m0, (t + 1) * BK, vec_a);
            load_b.load(B, ldb, N, K, n0, (t + 1) * BK, vec_b);
        }

        // The outer products of slice t.
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int g = 0; g < TM / 4; ++g) {
                const float4 v = *reinterpret_cast<const float4*>(
                    &As[cur][kk][g * (BM / (TM / 4)) + ty * 4]);
                a[4 * g + 0] = v.x; a[4 * g + 1] = v.y; a[4 * g + 2] = v.z; a[4 * g + 3] = v.w;
            }
#pragma unroll
            for (int g = 0; g < TN / 4; ++g) {
                const float4 v = *reinterpret_cast<const float4*>(
                    &Bs[cur][kk][g * (BN / (TN / 4)) + tx * 4]);
                b[4 * g + 0] = v.x; b[4 * g + 1] = v.y; b[4 * g + 2] = v.z; b[4 * g + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }

        // Slice t+1 goes into the other buffer. Nobody still reads that buffer:
        // it held slice t-1, and every thread passed the barrier after slice t-1.
        if (has_next) {
            load_a.store(As[cur ^ 1]);
            load_b.store(Bs[cur ^ 1]);
        }
        __syncthreads();
    }

    // Write the TM x TN results, 4 columns at a time, skipping what lies outside C.
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = m0 + (i / 4) * (BM / (TM / 4)) + ty * 4 + (i % 4);
        if (row >= M) continue;
#pragma unroll
        for (int g = 0; g < TN / 4; ++g) {
            const int col = n0 + g * (BN / (TN / 4)) + tx * 4;
            float* dst = C + (long long)row * N + col;
            float4 r = make_float4(alpha * acc[i][4 * g + 0], alpha * acc[i][4 * g + 1],
                                   alpha * acc[i][4 * g + 2], alpha * acc[i][4 * g + 3]);
            if (vec_c && col + 3 < N) {
                if (beta != 0.f) {
                    const float4 old = *reinterpret_cast<const float4*>(dst);
                    r.x += beta * old.x; r.y += beta * old.y; r.z += beta * old.z; r.w += beta * old.w;
                }
                *reinterpret_cast<float4*>(dst) = r;
            } else {
                const float vals[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    if (col + e < N) dst[e] = (beta != 0.f) ? vals[e] + beta * dst[e] : vals[e];
                }
            }
        }
    }
}

// Entry points. Arguments: A, B, C pointers; M, N, K; per-batch strides of A, B, C
// in elements (0 = the same matrix for every batch element); alpha, beta.
extern "C" __global__ void __launch_bounds__(NUM_THREADS)
sgemm_nn(const float* A, const float* B, float* C, int M, int N, int K,
         long long stride_a, long long stride_b, long long stride_c, float alpha, float beta) {
    sgemm<false, false>(A, B, C, M, N, K, stride_a, stride_b, stride_c, alpha, beta);  // A @ B
}

extern "C" __global__ void __launch_bounds__(NUM_THREADS)
sgemm_nt(const float* A, const float* B, float* C, int M, int N, int K,
         long long stride_a, long long stride_b, long long stride_c, float alpha, float beta) {
    sgemm<false, true>(A, B, C, M, N, K, stride_a, stride_b, stride_c, alpha, beta);   // A @ B.T
}

extern "C" __global__ void __launch_bounds__(NUM_THREADS)
sgemm_tn(const float* A, const float* B, float* C, int M, int N, int K,
         long long stride_a, long long stride_b, long long stride_c, float alpha, float beta) {
    sgemm<true, false>(A, B, C, M, N, K, stride_a, stride_b, stride_c, alpha, beta);   // A.T @ B
}

extern "C" __global__ void __launch_bounds__(NUM_THREADS)
sgemm_tt(const float* A, const float* B, float* C, int M, int N, int K,
         long long stride_a, long long stride_b, long long stride_c, float alpha, float beta) {
    sgemm<true, true>(A, B, C, M, N, K, stride_a, stride_b, stride_c, alpha, beta);    // A.T @ B.T
}
