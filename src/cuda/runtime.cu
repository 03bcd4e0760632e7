// CUDA runtime of fsad: the caching device allocator, copies, the per-device stream and the
// per-thread library handles.
//
// Allocator: one caching pool per device (src/core/caching_pool.hpp); sizes are rounded (512 B
// below 1 MiB, 2 MiB multiples above) and a request takes the smallest cached block up to 1.5x
// its size, otherwise cudaMalloc. When cudaMalloc fails the cache is released and the call
// retried once, then the error names the request and the usage. All work on a device is ordered
// on the device's one stream, so reusing a block freed by an earlier op is safe without
// synchronisation.
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../core/caching_pool.hpp"
#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {

void throw_error(const char* call, const char* status, const char* file, int line) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ":%d", line);
    throw CudaError(std::string(call) + " failed: " + status + " (" + file + buf + ")");
}

const char* cusolver_status_string(cusolverStatus_t s) {
    switch (s) {
        case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
        case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
        case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
        case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
        case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
        case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
        case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
        case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED: return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
        default: return "CUSOLVER_STATUS_(other)";
    }
}

namespace {

constexpr int kMaxDevices = 64;

void set_device(int device) {
    const int n = device_count();
    if (n == 0) throw CudaError("cuda:" + std::to_string(device) + " requested, but no CUDA device is available (no GPU or no driver)");
    if (device >= n)
        throw CudaError("cuda:" + std::to_string(device) + " requested, but only " + std::to_string(n) + " CUDA device(s) are visible");
    FSAD_CUDA_CHECK(cudaSetDevice(device));
}

struct DeviceMemory {
    int device;
    size_t round(size_t b) const {
        if (b == 0) b = 1;
        if (b < (1u << 20)) return (b + 511) & ~size_t(511);
        const size_t mb2 = size_t(2) << 20;
        return (b + mb2 - 1) / mb2 * mb2;
    }
    size_t reuse_limit(size_t size) const { return size + size / 2; }
    void* allocate(size_t size) {
        set_device(device);
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, size);
        if (e == cudaSuccess) return p;
        cudaGetLastError();
        if (e == cudaErrorMemoryAllocation) return nullptr;
        throw CudaError("cudaMalloc of " + std::to_string(size) + " bytes on cuda:" + std::to_string(device) +
                        " failed: " + cudaGetErrorString(e));
    }
    void deallocate(void* p) { FSAD_CUDA_CHECK(cudaFree(p)); }
    void settle() {  // queued kernels may still read the blocks about to be freed
        FSAD_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
        FSAD_CUDA_CHECK(cudaSetDevice(device));
    }
};

struct DeviceState {
    explicit DeviceState(int device) : pool(DeviceMemory{device}) {}
    std::mutex mu;
    cudaStream_t stream = nullptr;
    CachingPool<DeviceMemory> pool;
    void* ws = nullptr;
    size_t ws_bytes = 0;
    // staged host-to-device copies: two pinned buffers and the events of their last transfers
    std::mutex stage_mu;
    void* stage[2] = {nullptr, nullptr};
    cudaEvent_t staged[2] = {nullptr, nullptr};
    bool stage_failed = false;  // no pinned memory to be had: pageable copies from then on
};

DeviceState& state(int device) {
    // never destroyed: tensors may outlive static destructors
    static const auto* states = [] {
        auto* v = new std::vector<std::unique_ptr<DeviceState>>();
        for (int d = 0; d < kMaxDevices; ++d) v->push_back(std::make_unique<DeviceState>(d));
        return v;
    }();
    FSAD_CHECK(device >= 0 && device < kMaxDevices, "cuda: device index ", device, " out of range");
    return *(*states)[static_cast<size_t>(device)];
}

struct ThreadContexts {
    std::unordered_map<int, Context> by_device;
    ~ThreadContexts() {
        for (auto& [d, c] : by_device) {  // best effort at thread exit: errors are ignored
            if (c.cudnn) cudnn_api().cudnnDestroy(c.cudnn);
            if (c.cublas) cublas_api().cublasDestroy(c.cublas);
            if (c.cusolver) cusolver_api().cusolverDnDestroy(c.cusolver);
        }
    }
};

}  // namespace

int device_count() noexcept {
    static const int n = [] {
        int c = 0;
        if (cudaGetDeviceCount(&c) != cudaSuccess) {
            cudaGetLastError();  // clear the sticky "no driver / no device" error
            return 0;
        }
        return c;
    }();
    return n;
}

cudaStream_t stream(int device) {
    DeviceState& s = state(device);
    std::lock_guard<std::mutex> lk(s.mu);
    if (!s.stream) {
        set_device(device);
        FSAD_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    }
    return s.stream;
}

Context& context(int device) {
    thread_local ThreadContexts tc;
    set_device(device);
    Context& c = tc.by_device[device];
    if (!c.stream) {
        // the libraries first (loaded on first use: a missing one throws before any handle exists),
        // then the handles, kept only when all three are made
        const CublasApi& blas = cublas_api();
        const CudnnApi& dnn = cudnn_api();
        const CusolverApi& solver = cusolver_api();
        Context n;
        n.device = device;
        n.stream = stream(device);
        FSAD_CUBLAS_CHECK(blas.cublasCreate(&n.cublas));
        FSAD_CUBLAS_CHECK(blas.cublasSetStream(n.cublas, n.stream));
        FSAD_CUDNN_CHECK(dnn.cudnnCreate(&n.cudnn));
        FSAD_CUDNN_CHECK(dnn.cudnnSetStream(n.cudnn, n.stream));
        FSAD_CUSOLVER_CHECK(solver.cusolverDnCreate(&n.cusolver));
        FSAD_CUSOLVER_CHECK(solver.cusolverDnSetStream(n.cusolver, n.stream));
        c = n;
    }
    // cuBLAS math mode follows the TF32 switch (ops::set_allow_tf32) at every use
    FSAD_CUBLAS_CHECK(cublas_api().cublasSetMathMode(c.cublas, ops::allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    return c;
}

void* workspace(int device, size_t bytes) {
    static std::mutex ws_mu;  // growing is rare; stream order keeps an old buffer's queued users safe
    std::lock_guard<std::mutex> lk(ws_mu);
    DeviceState& s = state(device);
    if (bytes <= s.ws_bytes) return s.ws;
    if (s.ws) release(device, s.ws, s.ws_bytes);
    s.ws = nullptr;
    s.ws_bytes = 0;
    s.ws = alloc(device, bytes);
    s.ws_bytes = bytes;
    return s.ws;
}

void* alloc(int device, size_t bytes) {
    DeviceState& s = state(device);
    void* p = s.pool.allocate(bytes);
    if (!p)
        throw CudaError("cudaMalloc of " + std::to_string(bytes) + " bytes on cuda:" + std::to_string(device) +
                        " failed: " + cudaGetErrorString(cudaErrorMemoryAllocation) + " (" +
                        std::to_string(s.pool.stats().bytes_in_use >> 20) + " MiB in use by fsad)");
    return p;
}

void release(int device, void* p, size_t bytes) noexcept { state(device).pool.release(p, bytes); }

void empty_cache(int device) {
    if (device_count() == 0) return;
    state(device).pool.release_cached();
}

AllocatorStats stats(int device) { return state(device).pool.stats(); }

void reset_peak(int device) { state(device).pool.reset_peak(); }

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
    if (bytes == 0) return;
    const int dev = dst_dev.is_cuda() ? dst_dev.index : src_dev.index;
    if (src_dev.is_cuda() && !dst_dev.is_cuda()) state(src_dev.index).pool.count_read_to_host();
    cudaStream_t st = stream(dev);
    set_device(dev);
    if (dst_dev.is_cuda() && src_dev.is_cuda() && dst_dev.index != src_dev.index) {
        FSAD_CUDA_CHECK(cudaStreamSynchronize(stream(src_dev.index)));
        FSAD_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, bytes, st));
    } else {
        FSAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, st));
    }
    FSAD_CUDA_CHECK(cudaStreamSynchronize(st));
}

// Large copies from pageable host memory: the driver stages them through its own pinned buffers
// with one thread. Here the caller's host threads fill two pinned buffers of kStageBytes in turn
// (fill) while the DMA engine drains the other. Returns false (nothing copied) when pinned
// memory cannot be had; the caller then copies the pageable way.
bool copy_to_device_staged(void* dst, int device, const void* src, size_t bytes, HostCopy fill) {
    constexpr size_t kStageBytes = size_t(16) << 20;
    DeviceState& s = state(device);
    std::lock_guard<std::mutex> lk(s.stage_mu);
    if (s.stage_failed) return false;
    cudaStream_t st = stream(device);
    set_device(device);
    if (!s.stage[0]) {
        for (int b = 0; b < 2; ++b) {
            if (cudaHostAlloc(&s.stage[b], kStageBytes, cudaHostAllocDefault) != cudaSuccess ||
                cudaEventCreateWithFlags(&s.staged[b], cudaEventDisableTiming) != cudaSuccess) {
                cudaGetLastError();
                for (int k = 0; k < 2; ++k) {
                    if (s.stage[k]) cudaFreeHost(s.stage[k]);
                    if (s.staged[k]) cudaEventDestroy(s.staged[k]);
                    s.stage[k] = nullptr;
                    s.staged[k] = nullptr;
                }
                s.stage_failed = true;
                return false;
            }
        }
    }
    size_t i = 0;
    for (size_t off = 0; off < bytes; off += kStageBytes, ++i) {
        const size_t b = i & 1, n = std::min(kStageBytes, bytes - off);
        if (i >= 2) FSAD_CUDA_CHECK(cudaEventSynchronize(s.staged[b]));  // its previous transfer is done
        fill(s.stage[b], static_cast<const char*>(src) + off, n);
        FSAD_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, s.stage[b], n, cudaMemcpyHostToDevice, st));
        FSAD_CUDA_CHECK(cudaEventRecord(s.staged[b], st));
    }
    FSAD_CUDA_CHECK(cudaStreamSynchronize(st));
    return true;
}

void synchronize(int device) {
    if (device_count() == 0) return;
    FSAD_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
}

void* event_record(int device) {
    Context& c = context(device);
    cudaEvent_t e = nullptr;
    FSAD_CUDA_CHECK(cudaEventCreate(&e));
    const cudaError_t r = cudaEventRecord(e, c.stream);
    if (r != cudaSuccess) {
        cudaEventDestroy(e);
        FSAD_CUDA_CHECK(r);
    }
    return e;
}

double event_elapsed_ms(void* start, void* stop) {
    FSAD_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
    float ms = 0;
    FSAD_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
    return ms;
}

void event_destroy(void* event) noexcept {
    if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

std::string versions() {
    auto dotted = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
    int rt = 0, drv = 0;
    if (cudaRuntimeGetVersion(&rt) != cudaSuccess) cudaGetLastError();
    if (cudaDriverGetVersion(&drv) != cudaSuccess) {
        cudaGetLastError();
        drv = 0;
    }
    // each library's version, or why it cannot be loaded (asking loads it: `fsad info` does)
    auto loaded = [](auto version) {
        try {
            return version();
        } catch (const Error& e) {
            const std::string m = e.what();
            return std::string("not loadable (") + m.substr(0, m.find('\n')) + ")";
        }
    };
    auto lib = [](auto get) {
        int v[3] = {0, 0, 0};
        for (int k = 0; k < 3; ++k)
            if (get(static_cast<libraryPropertyType>(k), &v[k]) != 0) return std::string("?");
        return std::to_string(v[0]) + "." + std::to_string(v[1]) + "." + std::to_string(v[2]);
    };
    const std::string dnn = loaded([] {
        const size_t v = cudnn_api().cudnnGetVersion();  // major * 10000 + minor * 100 + patch (cuDNN 9)
        return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
    });
    const std::string blas = loaded([&] {
        const CublasApi& api = cublas_api();
        return lib([&](libraryPropertyType t, int* v) { return static_cast<int>(api.cublasGetProperty(t, v)); });
    });
    const std::string solver = loaded([&] {
        const CusolverApi& api = cusolver_api();
        return lib([&](libraryPropertyType t, int* v) { return static_cast<int>(api.cusolverGetProperty(t, v)); });
    });
    return "CUDA runtime " + dotted(rt) + ", driver " + (drv ? dotted(drv) : std::string("none")) + ", cuDNN " + dnn +
           ", cuBLAS " + blas + ", cuSOLVER " + solver;
}

// FP32 lanes per SM (fused multiply-adds per clock; CUDA C++ Programming Guide, arithmetic
// instruction throughput): 64 on sm_60, sm_70, sm_75 and sm_80; 128 on sm_61 and from sm_86 on
// (sm_86/87/89, sm_90, sm_100, sm_120).
double fp32_peak_tflops(int device) {
    set_device(device);
    int sms = 0, khz = 0, major = 0, minor = 0;
    FSAD_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    FSAD_CUDA_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device));
    FSAD_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    FSAD_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    const bool half_rate = (major == 6 && minor == 0) || major == 7 || (major == 8 && minor == 0);
    const double lanes = half_rate ? 64.0 : 128.0;
    return static_cast<double>(sms) * lanes * 2.0 * static_cast<double>(khz) * 1e3 * 1e-12;
}

std::string device_name(int device) {
    set_device(device);
    cudaDeviceProp p{};
    FSAD_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    char peak[32];
    std::snprintf(peak, sizeof peak, "%.1f", fp32_peak_tflops(device));
    return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
           std::to_string(p.totalGlobalMem >> 30) + " GiB, " + std::to_string(p.multiProcessorCount) + " SMs, FP32 peak " +
           peak + " TFLOP/s)";
}

}  // namespace fsad::cuda
