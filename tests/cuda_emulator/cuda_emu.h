// cuda_emu.h -- the CUDA features that minift's kernels use, emulated on the CPU, so
// that kernels/*.cu can be compiled with g++ and checked on machines without a GPU.
//
// The fake `cupy` module next to this file (cupy/__init__.py) puts
// `#include "cuda_emu.h"` in front of a kernel's source, rewrites its __shared__
// declarations, adds an `emu_launch_<kernel>` entry point per kernel and builds a
// shared library that it calls through ctypes. A launch then runs as follows.
//
// * The blocks of the grid run one after another.
// * The threads of a block are fibers (ucontext) on one OS thread. A fiber runs until
//   it waits at __syncthreads() or at a warp shuffle, or returns; then the next one
//   runs. Each thread thus gets as far ahead of the others as the barriers allow,
//   and a missing __syncthreads() shows: a thread reads shared memory that others
//   have not written yet (NaN, see below) or have already overwritten. Even blocks
//   run their threads in ascending order, odd blocks in descending order, so that
//   such a race shows whichever thread is meant to write first.
// * __syncthreads() releases when every thread that has not returned waits at it.
//   Threads waiting at different __syncthreads() lines (a divergent barrier) and
//   deadlocks (some threads at a barrier, the rest at a shuffle) are errors.
// * __shfl_xor_sync(0xffffffff, v, lane_mask) exchanges v among the 32 lanes of a
//   warp; all 32 must exist and take part.
// * Shared memory, static arrays and the dynamic one alike, is filled with NaN (all
//   bytes 0xFF) at the start of every block, so a value no thread wrote shows up in
//   the results. A guard zone follows the dynamic array; a write into it is an error
//   (the launch asked for less shared memory than the kernel uses).
// * A launch with more threads than the kernel's __launch_bounds__ is refused.
//
// What it does not do: run threads or blocks in parallel, execute a warp in lockstep,
// model timing, memory ordering or atomics, or bounds-check global memory (the fake
// cupy surrounds its arrays with guard zones for that). Only the CUDA features that
// minift's kernels use are here (1-D blocks, float4, the intrinsics below); a kernel
// using anything else fails to compile or is refused at launch.
//
// An error stops the launch: emu_launch_<kernel> returns nonzero, emu_error() says why.

#include <math.h>      // fmaf, exp2f, logf, fmaxf: the same names as in CUDA
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)              // read by the fake cupy, checked at launch
#define __syncthreads() emu::syncthreads(__LINE__)
#define EMU_EXPORT extern "C" __attribute__((visibility("default")))

struct alignas(16) float4 { float x, y, z, w; };
struct uint3 { unsigned x, y, z; };
typedef uint3 dim3;

static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }

static uint3 threadIdx;            // set before each fiber runs
static uint3 blockIdx;             // set before each block
static dim3 blockDim, gridDim;     // set at launch

namespace emu {

enum State { RUNNABLE, AT_SYNCTHREADS, AT_SHUFFLE, RETURNED };

struct Thread {
    ucontext_t context;
    State state;
    int line;          // AT_SYNCTHREADS: the source line of that __syncthreads()
    int lane_mask;     // AT_SHUFFLE: the lane_mask argument
    float value;       // AT_SHUFFLE: the value offered, then the value received
};

const size_t STACK_BYTES = 256 * 1024;      // per fiber; the kernels need a few KB
const size_t SMEM_GUARD_WORDS = 64;         // 256 bytes after the dynamic shared memory
// Fills guard zones: a signalling NaN, so a value computed from it is a different
// (quiet) NaN, and a store of such a value into the guard zone still shows.
const unsigned GUARD_WORD = 0x7FA0A0A0u;

static Thread* threads;                     // blockDim.x of them
static unsigned current;                    // index of the running fiber
static ucontext_t scheduler;
static void (*kernel)(void** args);         // calls the kernel with its arguments
static void** kernel_args;
static unsigned* dynamic_smem;
static const void* poisoned[16];            // static shared arrays filled this block
static int num_poisoned;
static char error[1024];

static void vreport(const char* format, va_list args) {
    if (!error[0]) vsnprintf(error, sizeof error, format, args);
}

static void report(const char* format, ...) {
    va_list args;
    va_start(args, format);
    vreport(format, args);
    va_end(args);
}

// Called by a kernel thread: reports and abandons the launch (the fiber never resumes).
static void thread_error(const char* format, ...) {
    va_list args;
    va_start(args, format);
    vreport(format, args);
    va_end(args);
    swapcontext(&threads[current].context, &scheduler);
}

static void wait(State state) {
    threads[current].state = state;
    swapcontext(&threads[current].context, &scheduler);
}

static void syncthreads(int line) {
    threads[current].line = line;
    wait(AT_SYNCTHREADS);
}

// The first thread of a block to reach a static __shared__ declaration fills the
// array with NaN (the fake cupy inserts the call after each declaration).
static void poison_shared(const void* array, size_t bytes) {
    for (int i = 0; i < num_poisoned; ++i)
        if (poisoned[i] == array) return;
    if (num_poisoned == (int)(sizeof poisoned / sizeof poisoned[0]))
        thread_error("more static __shared__ arrays than the emulator tracks");
    poisoned[num_poisoned++] = array;
    memset(const_cast<void*>(array), 0xFF, bytes);
}

static void fiber_main() {
    kernel(kernel_args);
    threads[current].state = RETURNED;   // then uc_link resumes the scheduler
}

// Called when no thread is runnable: releases the threads waiting at a complete
// barrier or shuffle. Returns false (with an error) when nothing can be released.
static bool release_waiting_threads() {
    const unsigned n = blockDim.x;
    bool released = false;
    for (unsigned w = 0; w < n / 32; ++w) {   // a partial warp cannot shuffle
        Thread* lanes = threads + w * 32;
        unsigned at_shuffle = 0, returned = 0;
        for (unsigned l = 0; l < 32; ++l) {
            at_shuffle += lanes[l].state == AT_SHUFFLE;
            returned += lanes[l].state == RETURNED;
        }
        if (at_shuffle == 0) continue;
        if (returned) {
            report("warp %u: %u lanes wait at __shfl_xor_sync but %u lanes have returned "
                   "(the full mask 0xffffffff names them)", w, at_shuffle, returned);
            return false;
        }
        if (at_shuffle < 32) continue;
        float received[32];
        for (unsigned l = 0; l < 32; ++l) received[l] = lanes[l ^ lanes[l].lane_mask].value;
        for (unsigned l = 0; l < 32; ++l) {
            lanes[l].value = received[l];
            lanes[l].state = RUNNABLE;
        }
        released = true;
    }
    if (released) return true;

    unsigned at_sync = 0, returned = 0, first = n;
    for (unsigned t = 0; t < n; ++t) {
        returned += threads[t].state == RETURNED;
        if (threads[t].state != AT_SYNCTHREADS) continue;
        if (first == n) first = t;
        if (threads[t].line != threads[first].line) {
            report("divergent __syncthreads(): thread %u waits at line %d, thread %u at line %d",
                   first, threads[first].line, t, threads[t].line);
            return false;
        }
        ++at_sync;
    }
    if (at_sync == 0 || at_sync + returned < n) {
        report("deadlock: %u threads wait at __syncthreads(), %u at a warp shuffle that "
               "not all lanes of their warp reach", at_sync, n - at_sync - returned);
        return false;
    }
    for (unsigned t = 0; t < n; ++t)
        if (threads[t].state == AT_SYNCTHREADS) threads[t].state = RUNNABLE;
    return true;
}

// Runs one block to the end; false on an error.
static bool run_block(bool descending, char* stacks) {
    const unsigned n = blockDim.x;
    for (unsigned t = 0; t < n; ++t) {
        Thread& th = threads[t];
        getcontext(&th.context);
        th.context.uc_stack.ss_sp = stacks + t * STACK_BYTES;
        th.context.uc_stack.ss_size = STACK_BYTES;
        th.context.uc_link = &scheduler;
        makecontext(&th.context, fiber_main, 0);
        th.state = RUNNABLE;
    }
    for (;;) {
        bool all_returned = true;
        for (unsigned i = 0; i < n; ++i) {
            const unsigned t = descending ? n - 1 - i : i;
            if (threads[t].state == RUNNABLE) {
                current = t;
                threadIdx = {t, 0, 0};
                swapcontext(&scheduler, &threads[t].context);
                if (error[0]) return false;
            }
            all_returned &= threads[t].state == RETURNED;
        }
        if (all_returned) return true;
        if (!release_waiting_threads()) return false;
    }
}

static int launch(void (*body)(void**), void** args, unsigned gx, unsigned gy, unsigned gz,
                  unsigned block_threads, size_t smem_bytes, unsigned max_threads) {
    error[0] = 0;
    if (block_threads < 1 || block_threads > max_threads || block_threads > 1024) {
        report("a block of %u threads; at most %u allowed (the kernel's __launch_bounds__, "
               "or CUDA's 1024)", block_threads, max_threads < 1024 ? max_threads : 1024);
        return 1;
    }
    gridDim = {gx, gy, gz};
    blockDim = {block_threads, 1, 1};
    kernel = body;
    kernel_args = args;
    threads = static_cast<Thread*>(calloc(block_threads, sizeof(Thread)));
    char* stacks = static_cast<char*>(malloc(block_threads * STACK_BYTES));
    const size_t smem_words = (smem_bytes + 3) / 4, guard_end = smem_words + SMEM_GUARD_WORDS;
    dynamic_smem = static_cast<unsigned*>(aligned_alloc(16, (guard_end + 3) / 4 * 16));

    unsigned long long block = 0;
    for (unsigned z = 0; z < gz && !error[0]; ++z)
        for (unsigned y = 0; y < gy && !error[0]; ++y)
            for (unsigned x = 0; x < gx && !error[0]; ++x, ++block) {
                blockIdx = {x, y, z};
                memset(dynamic_smem, 0xFF, smem_words * 4);
                for (size_t i = smem_words; i < guard_end; ++i) dynamic_smem[i] = GUARD_WORD;
                num_poisoned = 0;
                if (!run_block(block % 2 == 1, stacks)) break;
                for (size_t i = smem_words; i < guard_end; ++i)
                    if (dynamic_smem[i] != GUARD_WORD) {
                        report("block (%u, %u, %u) wrote past the end of its dynamic shared "
                               "memory (byte %zu; the launch gave it %zu bytes)", x, y, z,
                               4 * i, smem_bytes);
                        break;
                    }
            }
    free(dynamic_smem);
    free(stacks);
    free(threads);
    return error[0] != 0;
}

}  // namespace emu

inline float __shfl_xor_sync(unsigned mask, float value, int lane_mask) {
    if (mask != 0xffffffffu)
        emu::thread_error("__shfl_xor_sync(%#x, ...): only the full mask 0xffffffff is emulated",
                          mask);
    if (lane_mask < 0 || lane_mask > 31)
        emu::thread_error("__shfl_xor_sync(..., lane_mask=%d): outside 0..31", lane_mask);
    if (blockDim.x % 32 != 0 && threadIdx.x >= blockDim.x / 32 * 32)
        emu::thread_error("__shfl_xor_sync in a partial warp (block of %u threads)", blockDim.x);
    emu::threads[emu::current].lane_mask = lane_mask;
    emu::threads[emu::current].value = value;
    emu::wait(emu::AT_SHUFFLE);
    return emu::threads[emu::current].value;
}

EMU_EXPORT const char* emu_error() { return emu::error; }
