// A SIMT emulator for the CPU tests: runs fsad's own CUDA kernels (src/cuda/*.cuh), compiled as
// C++ by the host compiler, with CUDA's execution model, so that every CI run (no GPU) checks
// their indexing, their launch plans, their barriers and warp shuffles against the CPU ops.
//
// Model: a launch runs its blocks one after another; the threads of a block are fibers
// on one OS thread, each running until it exits or waits at __syncthreads() or a warp shuffle.
// Each warp in turn runs as far as it can (its shuffles released as soon as its 32 lanes arrive),
// up to a __syncthreads() or its end, so one warp may get a whole phase ahead of another, as on a
// GPU. A barrier is released when every thread of the block (of the warp, for a shuffle) waits at it;
// anything else is the bug a GPU would hang on or silently mis-compute, and is thrown as an
// error: a __syncthreads() that some threads never reach (an exited thread included), a
// full-mask shuffle some lanes of the warp miss, a warp of fewer than 32 threads shuffling.
// Shared memory is a function-static per OS thread (blocks do not overlap). Warps, the lanes of a
// warp and blocks run in a chosen order (Order::Forward or Order::Reverse): a kernel whose result
// depends on it reads memory another thread writes without a barrier in between; the tests run
// both orders and require equal results.
//
// Include this before any kernel header; not for nvcc. Device builtins used by fsad's kernels:
// threadIdx, blockIdx, blockDim, gridDim (x, y, z), __syncthreads, __shfl_down_sync,
// atomicAdd, atomicMin, the CUDA qualifiers; launch limits as on a real GPU (1024 threads per
// block, gridDim.y and .z at most 65535).
#pragma once
#if defined(__CUDACC__)
#error "simt.hpp emulates CUDA on the CPU: not for nvcc"
#endif
#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <math.h>  // ::sqrt, ::fmax, ::isfinite as device code calls them
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define FSAD_SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FSAD_SIMT_ASAN 1
#endif
#endif
#if defined(FSAD_SIMT_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// Fiber switches: on x86-64 a dozen instructions that save the callee-saved
// registers and the FP control words on the fiber's stack and swap stack pointers; elsewhere
// ucontext, whose swapcontext makes a system call per switch (saving the signal mask).
#if defined(__x86_64__) && !defined(FSAD_SIMT_UCONTEXT)
#define FSAD_SIMT_FAST_SWITCH 1
// fsad_simt_switch(&save_sp, load_sp): in a COMDAT section, as an inline function would be, so
// that every translation unit including this header may emit it
asm(R"(
    .section .text.fsad_simt_switch,"axG",@progbits,fsad_simt_switch,comdat
    .globl fsad_simt_switch
    .hidden fsad_simt_switch
    .type fsad_simt_switch,@function
fsad_simt_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size fsad_simt_switch, .-fsad_simt_switch
    .text
)");
extern "C" void fsad_simt_switch(void** save_sp, void* load_sp);
#else
#include <ucontext.h>
#endif

struct uint3 {
    unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace simt {

enum class Order { Forward, Reverse };

/// A kernel broke the execution model (see the top of this file).
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Runtime {
public:
    /// The order threads (and blocks) run in between barriers.
    Order order = Order::Forward;
    /// Counters over all launches: blocks run, barriers and shuffles released.
    int64_t blocks = 0, barriers = 0, shuffles = 0;

    static Runtime& get() {
        static thread_local Runtime r;
        return r;
    }

    /// Runs kernel(args...) over grid x block threads; the arguments convert to the kernel's
    /// parameter types once, as a launch copies them.
    template <class... P, class... A>
    void launch(void (*kernel)(P...), dim3 grid, dim3 block, A&&... args) {
        static_assert(sizeof...(P) == sizeof...(A), "simt::launch: wrong number of kernel arguments");
        std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
        run(grid, block, [&] { std::apply(kernel, params); });
    }

    // ---- used by the device builtins below
    struct Thread {
        uint3 idx;
        enum State { Runnable, AtBarrier, AtShuffle, Done } state = Runnable;
        unsigned char shfl_in[16] = {}, shfl_out[16] = {};
        unsigned shfl_delta = 0;
#if defined(FSAD_SIMT_FAST_SWITCH)
        void* sp = nullptr;
#else
        ucontext_t ctx{};
#endif
        std::unique_ptr<char[]> stack;
    };
    Thread& self() { return *threads_[current_]; }
    uint3 block_idx{};
    dim3 block_dim, grid_dim;

    void syncthreads() {
        self().state = Thread::AtBarrier;
        yield();
    }
    template <class T>
    T shfl_down(unsigned mask, T v, unsigned delta) {
        static_assert(sizeof(T) <= 16 && std::is_trivially_copyable_v<T>, "simt: shuffle of an unsupported type");
        if (mask != 0xffffffffu) fail("__shfl_down_sync with a partial mask is not emulated");
        Thread& t = self();
        std::memcpy(t.shfl_in, &v, sizeof(T));
        t.shfl_delta = delta;
        t.state = Thread::AtShuffle;
        yield();
        T r;
        std::memcpy(&r, self().shfl_out, sizeof(T));
        return r;
    }

private:
    static constexpr size_t kStack = 256 * 1024;
    std::vector<std::unique_ptr<Thread>> threads_;
    size_t current_ = 0;
#if defined(FSAD_SIMT_FAST_SWITCH)
    void* scheduler_sp_ = nullptr;
#else
    ucontext_t scheduler_{};
#endif
    std::function<void()> body_;
    std::exception_ptr thrown_;
#if defined(FSAD_SIMT_ASAN)
    void* fake_stack_ = nullptr;
    const void* main_bottom_ = nullptr;
    size_t main_size_ = 0;
#endif

    [[noreturn]] void fail(const std::string& what) const {
        throw Error("simt: block (" + std::to_string(block_idx.x) + "," + std::to_string(block_idx.y) + "," +
                    std::to_string(block_idx.z) + "): " + what);
    }

    static void entry() {
        Runtime& r = get();
#if defined(FSAD_SIMT_ASAN)
        __sanitizer_finish_switch_fiber(nullptr, &r.main_bottom_, &r.main_size_);
#endif
        try {
            r.body_();
        } catch (...) {
            if (!r.thrown_) r.thrown_ = std::current_exception();
        }
        r.self().state = Thread::Done;
        r.yield();  // never resumed
    }

    // from a fiber back to the scheduler
    void yield() {
#if defined(FSAD_SIMT_ASAN)
        void* fake = nullptr;
        __sanitizer_start_switch_fiber(self().state == Thread::Done ? nullptr : &fake, main_bottom_, main_size_);
#endif
#if defined(FSAD_SIMT_FAST_SWITCH)
        fsad_simt_switch(&self().sp, scheduler_sp_);
#else
        swapcontext(&self().ctx, &scheduler_);
#endif
#if defined(FSAD_SIMT_ASAN)
        __sanitizer_finish_switch_fiber(fake, &main_bottom_, &main_size_);
#endif
    }
    // from the scheduler into thread i
    void resume(size_t i) {
        current_ = i;
#if defined(FSAD_SIMT_ASAN)
        __sanitizer_start_switch_fiber(&fake_stack_, threads_[i]->stack.get(), kStack);
#endif
#if defined(FSAD_SIMT_FAST_SWITCH)
        fsad_simt_switch(&scheduler_sp_, threads_[i]->sp);
#else
        swapcontext(&scheduler_, &threads_[i]->ctx);
#endif
#if defined(FSAD_SIMT_ASAN)
        __sanitizer_finish_switch_fiber(fake_stack_, nullptr, nullptr);
#endif
    }
    // a fresh fiber for t that starts in entry()
    void start_fiber(Thread& t) {
#if defined(FSAD_SIMT_FAST_SWITCH)
        // the frame fsad_simt_switch pops: FP control words (MXCSR, x87), six registers, and the
        // return address entry(), left 8 bytes off 16-byte alignment as after a call
#if defined(FSAD_SIMT_ASAN)
        // the last fiber on this stack never returned: its frames' redzones are still poisoned
        __asan_unpoison_memory_region(t.stack.get(), kStack);
#endif
        auto top = reinterpret_cast<uintptr_t>(t.stack.get() + kStack) & ~uintptr_t(15);
        auto* f = reinterpret_cast<uint64_t*>(top - 8 - 8 * 8);
        f[0] = 0x1F80u | (uint64_t{0x037F} << 32);
        for (int r = 1; r <= 6; ++r) f[r] = 0;
        f[7] = reinterpret_cast<uint64_t>(&Runtime::entry);
        t.sp = f;
#else
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = t.stack.get();
        t.ctx.uc_stack.ss_size = kStack;
        t.ctx.uc_link = nullptr;
        makecontext(&t.ctx, &Runtime::entry, 0);
#endif
    }

    void run(dim3 grid, dim3 block, std::function<void()> body) {
        const uint64_t per_block = uint64_t{block.x} * block.y * block.z;
        if (per_block == 0 || per_block > 1024) throw Error("simt: launch with " + std::to_string(per_block) + " threads per block");
        if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
            throw Error("simt: launch grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," +
                        std::to_string(grid.z) + ") is out of CUDA's limits");
        body_ = std::move(body);
        grid_dim = grid;
        block_dim = block;
        while (threads_.size() < per_block) {
            threads_.push_back(std::make_unique<Thread>());
            threads_.back()->stack.reset(new char[kStack]);
        }
        const uint64_t nblocks = uint64_t{grid.x} * grid.y * grid.z;
        for (uint64_t b = 0; b < nblocks; ++b) {
            const uint64_t k = order == Order::Forward ? b : nblocks - 1 - b;
            block_idx = {static_cast<unsigned>(k % grid.x), static_cast<unsigned>(k / grid.x % grid.y),
                         static_cast<unsigned>(k / (uint64_t{grid.x} * grid.y))};
            run_block(static_cast<size_t>(per_block));
            ++blocks;
        }
    }

    void run_block(size_t n) {
        for (size_t i = 0; i < n; ++i) {
            Thread& t = *threads_[i];
            t.idx = {static_cast<unsigned>(i % block_dim.x), static_cast<unsigned>(i / block_dim.x % block_dim.y),
                     static_cast<unsigned>(i / (size_t{block_dim.x} * block_dim.y))};
            t.state = Thread::Runnable;
            start_fiber(t);
        }
        const size_t warps = (n + 31) / 32;
        for (;;) {
            // each warp in turn runs as far as it can: through its shuffles (released as soon as
            // its 32 lanes arrive) up to a __syncthreads() or its end; so one warp may run a whole
            // phase ahead of another, as on a GPU
            for (size_t k = 0; k < warps; ++k) {
                const size_t w = order == Order::Forward ? k : warps - 1 - k;
                const size_t lo = w * 32, hi = std::min(n, lo + 32);
                for (;;) {
                    for (size_t j = lo; j < hi; ++j) {
                        const size_t i = order == Order::Forward ? j : hi - 1 - (j - lo);
                        if (threads_[i]->state == Thread::Runnable) resume(i);
                        if (thrown_) {
                            auto e = thrown_;
                            thrown_ = nullptr;
                            abandon(n);
                            std::rethrow_exception(e);
                        }
                    }
                    size_t waiting = 0;
                    for (size_t i = lo; i < hi; ++i) waiting += threads_[i]->state == Thread::AtShuffle;
                    if (waiting == 0) break;
                    if (hi - lo < 32)
                        fail_and_abandon(n, "a full-mask shuffle in a warp of " + std::to_string(hi - lo) + " threads");
                    if (waiting < 32) break;  // lanes missing: a deadlock, reported below
                    for (size_t i = lo; i < hi; ++i) {
                        Thread& t = *threads_[i];
                        const size_t src = i - lo + t.shfl_delta < 32 ? i + t.shfl_delta : i;
                        std::memcpy(t.shfl_out, threads_[src]->shfl_in, sizeof t.shfl_out);
                        t.state = Thread::Runnable;
                    }
                    ++shuffles;
                }
            }
            size_t done = 0, at_barrier = 0, at_shuffle = 0;
            for (size_t i = 0; i < n; ++i) {
                const auto st = threads_[i]->state;
                done += st == Thread::Done;
                at_barrier += st == Thread::AtBarrier;
                at_shuffle += st == Thread::AtShuffle;
            }
            if (done == n) return;
            if (at_barrier == n) {
                for (size_t i = 0; i < n; ++i) threads_[i]->state = Thread::Runnable;
                ++barriers;
                continue;
            }
            // nothing can move: some threads wait where others never arrive
            fail_and_abandon(n, "deadlock: " + std::to_string(at_barrier) + " of " + std::to_string(n) +
                                    " threads wait at __syncthreads, " + std::to_string(at_shuffle) + " at a shuffle, " +
                                    std::to_string(done) + " exited");
        }
    }

    // The waiting fibers are dropped (nothing they own needs destruction in fsad's kernels); they
    // get fresh stacks, as a sanitizer may still mark parts of the old ones as live frames.
    void abandon(size_t n) {
        for (size_t i = 0; i < n; ++i) {
            Thread& t = *threads_[i];
            if (t.state != Thread::Done) t.stack.reset(new char[kStack]);
            t.state = Thread::Done;
        }
    }
    [[noreturn]] void fail_and_abandon(size_t n, const std::string& what) {
        abandon(n);
        fail(what);
    }
};

}  // namespace simt

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)  // a register budget for nvcc; launches are checked against CUDA's limits
#define __shared__ static thread_local
#define threadIdx (::simt::Runtime::get().self().idx)
#define blockIdx (::simt::Runtime::get().block_idx)
#define blockDim (::simt::Runtime::get().block_dim)
#define gridDim (::simt::Runtime::get().grid_dim)
#define FSAD_SIMT 1

inline void __syncthreads() { simt::Runtime::get().syncthreads(); }
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    return simt::Runtime::get().shfl_down(mask, v, delta);
}
// threads of a block take turns on one OS thread, and blocks do not overlap: plain updates are atomic
template <class T>
T atomicAdd(T* p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}
inline int atomicMin(int* p, int v) {
    const int old = *p;
    if (v < old) *p = v;
    return old;
}
