// The emulated CUDA runtime, cuDNN, cuBLAS and cuSOLVER of the FSAD_CUDA=EMULATED test build
// (what it checks and what it does not: cuda_runtime.h). Device memory is host memory, tracked;
// work is queued per stream and run, in submission order, when the host waits for that stream.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"
#include "cudnn.h"
#include "cusolverDn.h"

struct CUstream_st {
    int device = 0;
};
struct CUevent_st {
    bool timing = true;
    bool recorded = false;
    std::atomic<bool> done{false};
    std::chrono::steady_clock::time_point t{};
    cudaStream_t stream = nullptr;  // of the last record
    int pending = 0;                // queued records (under g_mu)
    bool destroyed = false;         // destroyed while a record was queued: deleted by the last one
};

namespace fsad_emu {
namespace {

constexpr int kHost = -1;  // the device of a pinned host allocation

struct Alloc {
    size_t bytes;
    int device;  // kHost for pinned host memory
};

// Never destroyed: device memory lives until the process ends, as on a GPU (and a leak checker
// at exit still sees it referenced).
std::mutex& g_mu = *new std::mutex;  // the allocation registry and the queue
std::map<uintptr_t, Alloc>& g_allocs = *new std::map<uintptr_t, Alloc>;  // start -> allocation
// queued work per stream (nullptr: the default stream); streams are independent, as fsad's
// non-blocking streams are, so a wait on one runs only that stream's work
std::map<cudaStream_t, std::deque<std::unique_ptr<Work>>>& g_queues =
    *new std::map<cudaStream_t, std::deque<std::unique_ptr<Work>>>;
std::recursive_mutex& g_exec_mu = *new std::recursive_mutex;  // one flush at a time, in order
std::atomic<int> g_sticky{cudaSuccess};   // a failed kernel's error: every later wait returns it
thread_local cudaError_t t_last = cudaSuccess;
thread_local int t_device = 0;
size_t g_device_bytes = 0;

int device_count() {
    static const int n = [] {
        const char* e = std::getenv("FSAD_EMU_DEVICES");
        const int v = e ? std::atoi(e) : 1;
        return std::clamp(v, 0, 8);
    }();
    return n;
}
size_t memory_limit() {
    static const size_t v = [] {
        const char* e = std::getenv("FSAD_EMU_MEMORY_MIB");
        return (e ? std::strtoull(e, nullptr, 10) : 16384ull) << 20;
    }();
    return v;
}

cudaError_t fail(cudaError_t e, const std::string& what) {
    std::fprintf(stderr, "fsad CUDA emulator: %s\n", what.c_str());
    t_last = e;
    return e;
}

// What [p, p+bytes) is: a device's memory (>= 0), pinned host memory (kHost), pageable host
// memory (-2, in no allocation), or a range that runs past the end of its allocation (-3).
constexpr int kPageable = -2, kBad = -3;
int classify(const void* p, size_t bytes) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return kPageable;
    --it;
    if (a >= it->first + it->second.bytes) return kPageable;
    if (a + bytes > it->first + it->second.bytes) return kBad;
    return it->second.device;
}

std::string ptr_str(const void* p) {
    char b[32];
    std::snprintf(b, sizeof b, "%p", p);
    return b;
}


CUstream_st g_all_streams_tag;
CUstream_st* const kAllStreams = &g_all_streams_tag;  // "every stream" in flush and wait_result

// Runs the queued work of stream s (kAllStreams: of every stream), in submission order.
void flush(cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> ex(g_exec_mu);
    for (;;) {
        std::unique_ptr<Work> w;
        {
            std::lock_guard<std::mutex> lk(g_mu);
            std::deque<std::unique_ptr<Work>>* q = nullptr;
            if (s == kAllStreams) {
                for (auto& [k, d] : g_queues)
                    if (!d.empty()) {
                        q = &d;
                        break;
                    }
            } else if (auto it = g_queues.find(s); it != g_queues.end() && !it->second.empty()) {
                q = &it->second;
            }
            if (!q) return;
            w = std::move(q->front());
            q->pop_front();
        }
        if (g_sticky.load() != cudaSuccess) continue;  // the context is lost: queued work is dropped
        try {
            w->run();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "fsad CUDA emulator: queued work failed: %s\n", e.what());
            g_sticky.store(cudaErrorLaunchFailure);
        }
    }
}

// The host waits for stream s (kAllStreams: the device): its work runs; a failed kernel's error.
cudaError_t wait_result(cudaStream_t s) {
    flush(s);
    const int sticky = g_sticky.load();
    return sticky == cudaSuccess ? cudaSuccess : (t_last = static_cast<cudaError_t>(sticky));
}

template <class F>
struct FnWork final : Work {
    F f;
    explicit FnWork(F fn) : f(std::move(fn)) {}
    void run() override { f(); }
};
template <class F>
cudaError_t submit(cudaStream_t s, F f) {
    return enqueue(s, new FnWork<F>(std::move(f)));
}

// Library handles (cuDNN, cuBLAS, cuSOLVER: a stream each, created only where a device is) and
// cuDNN's descriptors: created, destroyed, bound to a stream.
template <class S, class H>
S handle_create(H** h, S ok, S no_device) {
    if (device_count() == 0) return no_device;
    *h = new H;
    return ok;
}
template <class S, class H>
S handle_destroy(H* h, S ok) {
    delete h;
    return ok;
}
template <class S, class H>
S handle_set_stream(H* h, cudaStream_t s, S ok, S no_handle) {
    if (!h) return no_handle;
    h->stream = s;
    return ok;
}

}  // namespace

cudaError_t enqueue(cudaStream_t s, Work* w) {
    std::unique_ptr<Work> owned(w);
    if (g_sticky.load() != cudaSuccess) return t_last = static_cast<cudaError_t>(g_sticky.load());
    std::lock_guard<std::mutex> lk(g_mu);
    g_queues[s].push_back(std::move(owned));
    return cudaSuccess;
}

int stream_device(cudaStream_t s) { return s ? s->device : t_device; }

bool check_device_range(const void* p, size_t bytes, int device, const char* what) {
    if (bytes == 0) return true;
    const int c = classify(p, bytes);
    if (c == device) return true;
    std::string why = c == kPageable ? "is not device memory"
                      : c == kHost   ? "is pinned host memory, not device memory"
                      : c == kBad    ? "runs past the end of its allocation"
                                     : "is memory of device " + std::to_string(c);
    std::fprintf(stderr, "fsad CUDA emulator: %s: [%s, +%zu bytes) %s (device %d expected)\n", what, ptr_str(p).c_str(),
                 bytes, why.c_str(), device);
    return false;
}

bool check_device_pointer(const void* p, int device, const char* what) { return check_device_range(p, 1, device, what); }

void set_error(cudaError_t e, const char* what) { fail(e, what); }

simt::Order kernel_order() {
    static const simt::Order o = [] {
        const char* e = std::getenv("FSAD_EMU_ORDER");
        return e && std::string(e) == "reverse" ? simt::Order::Reverse : simt::Order::Forward;
    }();
    return o;
}

}  // namespace fsad_emu

using namespace fsad_emu;

// ================================================================== runtime
const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorNotReady: return "device not ready";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    }
    return "unknown error";
}
cudaError_t cudaGetLastError() {
    const cudaError_t e = t_last;
    t_last = static_cast<cudaError_t>(g_sticky.load());
    return e;
}
cudaError_t cudaPeekAtLastError() { return t_last; }
cudaError_t cudaGetDeviceCount(int* n) {
    *n = fsad_emu::device_count();
    if (*n == 0) return t_last = cudaErrorNoDevice;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= fsad_emu::device_count()) return fail(cudaErrorInvalidDevice, "cudaSetDevice: no device " + std::to_string(device));
    t_device = device;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    if (device < 0 || device >= fsad_emu::device_count()) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no device " + std::to_string(device));
    std::memset(p, 0, sizeof *p);
    std::snprintf(p->name, sizeof p->name, "fsad emulated GPU %d (SIMT emulator on the CPU)", device);
    p->totalGlobalMem = memory_limit();
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 4;
    p->clockRate = 1000000;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device) {
    cudaDeviceProp p;
    if (const cudaError_t e = cudaGetDeviceProperties(&p, device); e != cudaSuccess) return e;
    switch (a) {
        case cudaDevAttrClockRate: *v = p.clockRate; break;
        case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
        case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
        case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
        default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not emulated");
    }
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
    *s = new CUstream_st{t_device};
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) { return wait_result(s); }
cudaError_t cudaDeviceSynchronize() { return wait_result(kAllStreams); }

cudaError_t cudaMalloc(void** p, size_t bytes) {
    *p = nullptr;
    if (bytes == 0) return cudaSuccess;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (g_device_bytes + bytes > memory_limit()) return t_last = cudaErrorMemoryAllocation;
        g_device_bytes += bytes;
    }
    void* q = nullptr;  // exactly `bytes` (a sanitizer's redzone right after), 256-byte aligned as cudaMalloc's
    if (posix_memalign(&q, 256, bytes) != 0) {
        std::lock_guard<std::mutex> lk(g_mu);
        g_device_bytes -= bytes;
        return t_last = cudaErrorMemoryAllocation;
    }
    std::memset(q, 0xff, bytes);  // NaNs (and -1s): reading what nothing wrote shows
    std::lock_guard<std::mutex> lk(g_mu);
    g_allocs[reinterpret_cast<uintptr_t>(q)] = {bytes, t_device};
    *p = q;
    return cudaSuccess;
}
namespace {
cudaError_t free_alloc(void* p, bool pinned, const char* fn) {
    if (!p) return cudaSuccess;
    if (const cudaError_t e = wait_result(kAllStreams); e != cudaSuccess) return e;  // frees wait for the device
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == g_allocs.end() || (it->second.device == kHost) != pinned)
        return fail(cudaErrorInvalidValue, std::string(fn) + ": " + ptr_str(p) + " is not the start of a live " +
                                               (pinned ? "pinned host" : "device") + " allocation");
    if (!pinned) g_device_bytes -= it->second.bytes;
    g_allocs.erase(it);
    std::free(p);
    return cudaSuccess;
}
}  // namespace
cudaError_t cudaFree(void* p) { return free_alloc(p, false, "cudaFree"); }
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
    void* q = nullptr;
    if (posix_memalign(&q, 256, std::max<size_t>(bytes, 1)) != 0) return t_last = cudaErrorMemoryAllocation;
    std::memset(q, 0xff, bytes);
    std::lock_guard<std::mutex> lk(g_mu);
    g_allocs[reinterpret_cast<uintptr_t>(q)] = {std::max<size_t>(bytes, 1), kHost};
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) { return free_alloc(p, true, "cudaFreeHost"); }

namespace {
const char* kind_name(cudaMemcpyKind k) {
    switch (k) {
        case cudaMemcpyHostToHost: return "cudaMemcpyHostToHost";
        case cudaMemcpyHostToDevice: return "cudaMemcpyHostToDevice";
        case cudaMemcpyDeviceToHost: return "cudaMemcpyDeviceToHost";
        case cudaMemcpyDeviceToDevice: return "cudaMemcpyDeviceToDevice";
        case cudaMemcpyDefault: return "cudaMemcpyDefault";
    }
    return "?";
}

// A copy of `rows` rows of `width` bytes (pitches in bytes): checked, then queued. A pageable
// source is read now (CUDA stages it before returning); a pageable destination makes the call
// synchronous (CUDA returns once the copy is done).
cudaError_t copy_rows(const char* fn, void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows,
                      cudaMemcpyKind kind, cudaStream_t s, int dst_expect = -9, int src_expect = -9) {
    if (width == 0 || rows == 0) return cudaSuccess;
    if (width > dpitch || width > spitch) return fail(cudaErrorInvalidValue, std::string(fn) + ": width exceeds a pitch");
    const size_t dspan = dpitch * (rows - 1) + width, sspan = spitch * (rows - 1) + width;
    const int dc = classify(dst, dspan), sc = classify(src, sspan);
    auto where = [](int c) {
        return c == kPageable ? std::string("pageable host memory")
               : c == kHost   ? std::string("pinned host memory")
               : c == kBad    ? std::string("a range running past the end of its allocation")
                              : "memory of device " + std::to_string(c);
    };
    const std::string desc = std::string(fn) + " (" + kind_name(kind) + ", " + std::to_string(dspan) + " bytes): destination " +
                             ptr_str(dst) + " is " + where(dc) + ", source " + ptr_str(src) + " is " + where(sc);
    if (dc == kBad || sc == kBad) return fail(cudaErrorInvalidValue, desc);
    const bool dev_dst = dc >= 0, dev_src = sc >= 0;
    bool ok = true;
    switch (kind) {
        case cudaMemcpyHostToHost: ok = !dev_dst && !dev_src; break;
        case cudaMemcpyHostToDevice: ok = dev_dst && !dev_src; break;
        case cudaMemcpyDeviceToHost: ok = !dev_dst && dev_src; break;
        case cudaMemcpyDeviceToDevice: ok = dev_dst && dev_src; break;
        case cudaMemcpyDefault: break;
    }
    if (dst_expect != -9 && dc != dst_expect) ok = false;
    if (src_expect != -9 && sc != src_expect) ok = false;
    if (!ok) return fail(cudaErrorInvalidValue, desc);
    std::vector<char> snapshot;
    const char* from = static_cast<const char*>(src);
    size_t from_pitch = spitch;
    if (sc == kPageable) {
        snapshot.resize(rows * width);
        for (size_t r = 0; r < rows; ++r) std::memcpy(snapshot.data() + r * width, from + r * spitch, width);
        from_pitch = width;
    }
    char* to = static_cast<char*>(dst);
    const cudaError_t e = submit(s, [to, dpitch, from, from_pitch, width, rows, snap = std::move(snapshot)] {
        const char* f = snap.empty() ? from : snap.data();
        for (size_t r = 0; r < rows; ++r) std::memmove(to + r * dpitch, f + r * from_pitch, width);
    });
    if (e != cudaSuccess) return e;
    if (dc == kPageable) return wait_result(s);
    return cudaSuccess;
}
}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    return copy_rows("cudaMemcpyAsync", dst, bytes, src, bytes, bytes, 1, kind, s);
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s) {
    return copy_rows("cudaMemcpy2DAsync", dst, dpitch, src, spitch, width, height, kind, s);
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t bytes, cudaStream_t s) {
    return copy_rows("cudaMemcpyPeerAsync", dst, bytes, src, bytes, bytes, 1, cudaMemcpyDeviceToDevice, s, dst_device,
                     src_device);
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = new CUevent_st;
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
    *e = new CUevent_st;
    (*e)->timing = !(flags & cudaEventDisableTiming);
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: null event");
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (e->pending > 0) {  // as in CUDA, the destruction completes once the queued record ran
            e->destroyed = true;
            return cudaSuccess;
        }
    }
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: null event");
    {
        std::lock_guard<std::mutex> lk(g_mu);
        ++e->pending;
    }
    e->recorded = true;
    e->done = false;
    e->stream = s;
    return submit(s, [e] {
        e->t = std::chrono::steady_clock::now();
        e->done = true;
        bool gone = false;
        {
            std::lock_guard<std::mutex> lk(g_mu);
            gone = --e->pending == 0 && e->destroyed;
        }
        if (gone) delete e;
    });
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: null event");
    if (!e->recorded || e->done) return static_cast<cudaError_t>(g_sticky.load());
    return wait_result(e->stream);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    if (!a || !b || !a->timing || !b->timing)
        return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event is null or created without timing");
    if (!a->recorded || !b->recorded || !a->done || !b->done) return t_last = cudaErrorNotReady;
    *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
    return cudaSuccess;
}

// ================================================================== cuDNN
struct cudnnContext {
    cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
    int n = 0, c = 0, h = 0, w = 0;
    bool set = false;
    cudnnDataType_t type = CUDNN_DATA_FLOAT;
};
struct cudnnFilterStruct {
    int k = 0, c = 0, h = 0, w = 0;
    bool set = false;
    cudnnDataType_t type = CUDNN_DATA_FLOAT;
};
struct cudnnConvolutionStruct {
    int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1, groups = 1;
    bool set = false;
    cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

cudnnStatus_t dnn_fail(cudnnStatus_t s, const std::string& what) {
    std::fprintf(stderr, "fsad CUDA emulator: cuDNN: %s\n", what.c_str());
    return s;
}

// The geometry of one convolution, copied from the descriptors at the call (they may be
// destroyed before the queued work runs).
struct Geo {
    int n, c, h, w;         // input
    int k, r, s;            // filter: k outputs, c / groups inputs, r x s
    int oh, ow;             // output
    int ph, pw, sh, sw, dh, dw, g;
    bool bf16;              // the three tensors hold bfloat16 (else float)
    size_t esize() const { return bf16 ? 2 : 4; }
    size_t x_elems() const { return size_t(n) * c * h * w; }
    size_t w_elems() const { return size_t(k) * (c / g) * r * s; }
    size_t y_elems() const { return size_t(n) * k * oh * ow; }
};

cudnnStatus_t geometry(const char* fn, cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd, cudnnConvolutionDescriptor_t cd,
                       cudnnTensorDescriptor_t yd, Geo* g) {
    if (!xd || !wd || !cd || !yd || !xd->set || !wd->set || !cd->set || !yd->set)
        return dnn_fail(CUDNN_STATUS_BAD_PARAM, std::string(fn) + ": a descriptor is null or was never set");
    // cuDNN's supported configurations here: FLOAT_CONFIG and PSEUDO_BFLOAT16_CONFIG (x, w and y of
    // one type; the compute type, float, is checked when the convolution descriptor is set)
    if (xd->type != wd->type || xd->type != yd->type)
        return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, std::string(fn) + ": x, w and y descriptors of different data types");
    Geo q{xd->n, xd->c, xd->h, xd->w, wd->k, wd->h, wd->w, 0, 0, cd->pad_h, cd->pad_w, cd->u, cd->v, cd->dil_h, cd->dil_w, cd->groups,
          xd->type == CUDNN_DATA_BFLOAT16};
    if (q.c % q.g || q.k % q.g || wd->c * q.g != q.c)
        return dnn_fail(CUDNN_STATUS_BAD_PARAM, std::string(fn) + ": input channels " + std::to_string(q.c) + ", filter " +
                                                    std::to_string(q.k) + "x" + std::to_string(wd->c) + ", " +
                                                    std::to_string(q.g) + " groups do not agree");
    q.oh = 1 + (q.h + 2 * q.ph - ((q.r - 1) * q.dh + 1)) / q.sh;
    q.ow = 1 + (q.w + 2 * q.pw - ((q.s - 1) * q.dw + 1)) / q.sw;
    if (q.oh <= 0 || q.ow <= 0 || yd->n != q.n || yd->c != q.k || yd->h != q.oh || yd->w != q.ow)
        return dnn_fail(CUDNN_STATUS_BAD_PARAM, std::string(fn) + ": output descriptor " + std::to_string(yd->n) + "x" +
                                                    std::to_string(yd->c) + "x" + std::to_string(yd->h) + "x" +
                                                    std::to_string(yd->w) + ", the convolution gives " + std::to_string(q.n) +
                                                    "x" + std::to_string(q.k) + "x" + std::to_string(q.oh) + "x" +
                                                    std::to_string(q.ow));
    *g = q;
    return CUDNN_STATUS_SUCCESS;
}

// columns ox of an output row whose input column ox*sw - pw + kw*dw lies in [0, w)
inline void col_range(const Geo& g, int kw, int* lo, int* hi) {
    const int off = kw * g.dw - g.pw;  // ix = ox*sw + off
    int a = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
    int b = g.w - 1 - off < 0 ? 0 : (g.w - 1 - off) / g.sw + 1;
    *lo = std::min(a, g.ow);
    *hi = std::min(b, g.ow);
}

void conv_fwd(const Geo& g, const float* x, const float* w, float* y, float alpha, float beta) {
    const int cg = g.c / g.g, kg = g.k / g.g;
    std::vector<float> acc(size_t(g.oh) * g.ow);
    for (int n = 0; n < g.n; ++n)
        for (int oc = 0; oc < g.k; ++oc) {
            std::fill(acc.begin(), acc.end(), 0.0f);
            const int grp = oc / kg;
            for (int icg = 0; icg < cg; ++icg) {
                const float* xp = x + (size_t(n) * g.c + grp * cg + icg) * g.h * g.w;
                for (int kh = 0; kh < g.r; ++kh)
                    for (int kw = 0; kw < g.s; ++kw) {
                        const float wv = w[((size_t(oc) * cg + icg) * g.r + kh) * g.s + kw];
                        int lo, hi;
                        col_range(g, kw, &lo, &hi);
                        for (int oy = 0; oy < g.oh; ++oy) {
                            const int iy = oy * g.sh - g.ph + kh * g.dh;
                            if (iy < 0 || iy >= g.h) continue;
                            const float* xr = xp + size_t(iy) * g.w + kw * g.dw - g.pw;
                            float* ar = acc.data() + size_t(oy) * g.ow;
                            for (int ox = lo; ox < hi; ++ox) ar[ox] += wv * xr[ox * g.sw];
                        }
                    }
            }
            float* yp = y + (size_t(n) * g.k + oc) * g.oh * g.ow;
            for (size_t i = 0; i < acc.size(); ++i) yp[i] = alpha * acc[i] + (beta != 0.0f ? beta * yp[i] : 0.0f);
        }
}

void conv_bwd_data(const Geo& g, const float* w, const float* dy, float* dx, float alpha, float beta) {
    const int cg = g.c / g.g, kg = g.k / g.g;
    std::vector<float> acc(size_t(g.h) * g.w);
    for (int n = 0; n < g.n; ++n)
        for (int ic = 0; ic < g.c; ++ic) {
            std::fill(acc.begin(), acc.end(), 0.0f);
            const int grp = ic / cg, icg = ic % cg;
            for (int okg = 0; okg < kg; ++okg) {
                const int oc = grp * kg + okg;
                const float* dyp = dy + (size_t(n) * g.k + oc) * g.oh * g.ow;
                for (int kh = 0; kh < g.r; ++kh)
                    for (int kw = 0; kw < g.s; ++kw) {
                        const float wv = w[((size_t(oc) * cg + icg) * g.r + kh) * g.s + kw];
                        int lo, hi;
                        col_range(g, kw, &lo, &hi);
                        for (int oy = 0; oy < g.oh; ++oy) {
                            const int iy = oy * g.sh - g.ph + kh * g.dh;
                            if (iy < 0 || iy >= g.h) continue;
                            float* ar = acc.data() + size_t(iy) * g.w + kw * g.dw - g.pw;
                            const float* dr = dyp + size_t(oy) * g.ow;
                            for (int ox = lo; ox < hi; ++ox) ar[ox * g.sw] += wv * dr[ox];
                        }
                    }
            }
            float* dp = dx + (size_t(n) * g.c + ic) * g.h * g.w;
            for (size_t i = 0; i < acc.size(); ++i) dp[i] = alpha * acc[i] + (beta != 0.0f ? beta * dp[i] : 0.0f);
        }
}

void conv_bwd_filter(const Geo& g, const float* x, const float* dy, float* dw, float alpha, float beta) {
    const int cg = g.c / g.g, kg = g.k / g.g;
    for (int oc = 0; oc < g.k; ++oc) {
        const int grp = oc / kg;
        for (int icg = 0; icg < cg; ++icg)
            for (int kh = 0; kh < g.r; ++kh)
                for (int kw = 0; kw < g.s; ++kw) {
                    int lo, hi;
                    col_range(g, kw, &lo, &hi);
                    float sum = 0.0f;
                    for (int n = 0; n < g.n; ++n) {
                        const float* xp = x + (size_t(n) * g.c + grp * cg + icg) * g.h * g.w;
                        const float* dyp = dy + (size_t(n) * g.k + oc) * g.oh * g.ow;
                        for (int oy = 0; oy < g.oh; ++oy) {
                            const int iy = oy * g.sh - g.ph + kh * g.dh;
                            if (iy < 0 || iy >= g.h) continue;
                            const float* xr = xp + size_t(iy) * g.w + kw * g.dw - g.pw;
                            const float* dr = dyp + size_t(oy) * g.ow;
                            for (int ox = lo; ox < hi; ++ox) sum += dr[ox] * xr[ox * g.sw];
                        }
                    }
                    float& o = dw[((size_t(oc) * cg + icg) * g.r + kh) * g.s + kw];
                    o = alpha * sum + (beta != 0.0f ? beta * o : 0.0f);
                }
    }
}

// The emulated algorithms: 0 needs no workspace, 1 needs 1 MiB (which it scribbles over, so a
// workspace shared with live data shows); the search also reports algorithm 2 as failing.
constexpr size_t kAlgo1Workspace = size_t(1) << 20;
size_t algo_workspace(int algo) { return algo == 1 ? kAlgo1Workspace : 0; }

template <class Perf>
void report(int requested, int* returned, Perf* perf, size_t ws_bytes, bool none_work) {
    using Algo = decltype(perf->algo);
    std::vector<Perf> all;
    if (none_work) {  // every algorithm fails for these tensors
        for (int a = 0; a < 3; ++a)
            all.push_back({static_cast<Algo>(a), CUDNN_STATUS_NOT_SUPPORTED, -1.0f, 0, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH, {}});
        *returned = std::min<int>(requested, static_cast<int>(all.size()));
        for (int i = 0; i < *returned; ++i) perf[i] = all[static_cast<size_t>(i)];
        return;
    }
    all.push_back({static_cast<Algo>(2), CUDNN_STATUS_ALLOC_FAILED, -1.0f, ws_bytes + 1, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH, {}});
    if (ws_bytes >= kAlgo1Workspace)
        all.push_back({static_cast<Algo>(1), CUDNN_STATUS_SUCCESS, 0.5f, kAlgo1Workspace, CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH, {}});
    all.push_back({static_cast<Algo>(0), CUDNN_STATUS_SUCCESS, 1.0f, 0, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH, {}});
    *returned = std::min<int>(requested, static_cast<int>(all.size()));
    for (int i = 0; i < *returned; ++i) perf[i] = all[static_cast<size_t>(i)];
}

// Checks the device ranges of one convolution call; the workspace of `algo` (-1: the search's
// whole workspace) must be given and in device memory.
cudnnStatus_t check_call(const char* fn, cudnnHandle_t h, const Geo& g, const void* x, const void* w, const void* y, int algo,
                         const void* ws, size_t ws_bytes) {
    if (!h) return dnn_fail(CUDNN_STATUS_NOT_INITIALIZED, std::string(fn) + ": null handle");
    const int dev = stream_device(h->stream);
    const std::string f(fn);
    if (!check_device_range(x, g.x_elems() * g.esize(), dev, (f + ": x").c_str()) ||
        !check_device_range(w, g.w_elems() * g.esize(), dev, (f + ": w").c_str()) ||
        !check_device_range(y, g.y_elems() * g.esize(), dev, (f + ": y").c_str()))
        return CUDNN_STATUS_BAD_PARAM;
    if (algo >= 0) {
        if (algo > 1) return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, f + ": algorithm " + std::to_string(algo) + " was not offered by the search");
        if (ws_bytes < algo_workspace(algo))
            return dnn_fail(CUDNN_STATUS_BAD_PARAM, f + ": algorithm " + std::to_string(algo) + " needs " +
                                                        std::to_string(algo_workspace(algo)) + " bytes of workspace, " +
                                                        std::to_string(ws_bytes) + " given");
    }
    if (ws_bytes && !check_device_range(ws, ws_bytes, dev, (f + ": workspace").c_str())) return CUDNN_STATUS_BAD_PARAM;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t queued(cudaError_t e) { return e == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED; }

void scribble(void* ws, size_t bytes) {
    if (ws && bytes) std::memset(ws, 0xff, bytes);
}

}  // namespace

const char* cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
        case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
        case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
        case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
        case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
        case CUDNN_STATUS_ALLOC_FAILED: return "CUDNN_STATUS_ALLOC_FAILED";
        case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
    return "CUDNN_STATUS_UNKNOWN";
}
size_t cudnnGetVersion() { return 91900; }
cudnnStatus_t cudnnCreate(cudnnHandle_t* h) { return handle_create(h, CUDNN_STATUS_SUCCESS, CUDNN_STATUS_NOT_INITIALIZED); }
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) { return handle_destroy(h, CUDNN_STATUS_SUCCESS); }
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) {
    return handle_set_stream(h, s, CUDNN_STATUS_SUCCESS, CUDNN_STATUS_NOT_INITIALIZED);
}
namespace {
template <class D>
cudnnStatus_t make(D** d) {
    *d = new D;
    return CUDNN_STATUS_SUCCESS;
}
template <class D>
cudnnStatus_t set4d(const char* fn, D* d, cudnnTensorFormat_t f, cudnnDataType_t t, int a, int b, int c, int e) {
    if (f != CUDNN_TENSOR_NCHW || (t != CUDNN_DATA_FLOAT && t != CUDNN_DATA_BFLOAT16))
        return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, std::string(fn) + ": only NCHW float and bfloat16 are emulated");
    if (a <= 0 || b <= 0 || c <= 0 || e <= 0) return dnn_fail(CUDNN_STATUS_BAD_PARAM, std::string(fn) + ": a dimension <= 0");
    *d = {a, b, c, e, true, t};
    return CUDNN_STATUS_SUCCESS;
}
}  // namespace
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) { return make(d); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) { return handle_destroy(d, CUDNN_STATUS_SUCCESS); }
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f, cudnnDataType_t t, int n, int c,
                                         int h, int w) {
    return set4d("cudnnSetTensor4dDescriptor", d, f, t, n, c, h, w);
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) { return make(d); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) { return handle_destroy(d, CUDNN_STATUS_SUCCESS); }
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t, cudnnTensorFormat_t f, int k, int c,
                                         int h, int w) {
    return set4d("cudnnSetFilter4dDescriptor", d, f, t, k, c, h, w);
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) { return make(d); }
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) { return handle_destroy(d, CUDNN_STATUS_SUCCESS); }
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
    if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0)
        return dnn_fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolution2dDescriptor: negative padding or a stride/dilation <= 0");
    if (mode != CUDNN_CROSS_CORRELATION || compute != CUDNN_DATA_FLOAT)
        return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, "convolution: only float cross-correlation is emulated");
    d->pad_h = pad_h;
    d->pad_w = pad_w;
    d->u = u;
    d->v = v;
    d->dil_h = dilation_h;
    d->dil_w = dilation_w;
    d->set = true;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
    if (groups <= 0) return dnn_fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionGroupCount: groups <= 0");
    d->groups = groups;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
    d->math = m;
    return CUDNN_STATUS_SUCCESS;
}

namespace {
// One convolution call, in any direction: the geometry from the descriptors (x, w, conv, y
// order), the device ranges (x, w, y and the workspace checked), then compute(alpha, beta) queued.
// A search (algo < 0) runs before it returns, writing its output as cuDNN's does, and reports
// the emulated algorithms; a call with an algorithm only queues.
template <class F>
cudnnStatus_t conv_call(const char* fn, cudnnHandle_t h, cudnnTensorDescriptor_t xd, const void* x, cudnnFilterDescriptor_t wd,
                        const void* w, cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, const void* y, int algo,
                        void* ws, size_t ws_bytes, const void* alpha, const void* beta, F compute) {
    Geo g;
    if (auto s = geometry(fn, xd, wd, cd, yd, &g)) return s;
    if (auto s = check_call(fn, h, g, x, w, y, algo, ws, ws_bytes)) return s;
    if (algo >= 0 && g.bf16 && std::getenv("FSAD_EMU_CUDNN_BF16"))
        return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, std::string(fn) + ": no bfloat16 algorithm (FSAD_EMU_CUDNN_BF16)");
    const float a = alpha ? *static_cast<const float*>(alpha) : 1.0f, b = beta ? *static_cast<const float*>(beta) : 0.0f;
    const size_t scr = algo < 0 ? 0 : algo_workspace(algo);
    const cudaError_t e = submit(h->stream, [=] {
        scribble(ws, scr);
        compute(g, a, b);
    });
    if (e != cudaSuccess || (algo < 0 && wait_result(h->stream) != cudaSuccess)) return CUDNN_STATUS_EXECUTION_FAILED;
    return CUDNN_STATUS_SUCCESS;
}
template <class Perf, class F>
cudnnStatus_t conv_search(const char* fn, cudnnHandle_t h, cudnnTensorDescriptor_t xd, const void* x, cudnnFilterDescriptor_t wd,
                          const void* w, cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, const void* y,
                          int requested, int* returned, Perf* perf, void* ws, size_t ws_bytes, F compute) {
    if (requested < 1) return dnn_fail(CUDNN_STATUS_BAD_PARAM, std::string(fn) + ": requested < 1");
    // FSAD_EMU_CUDNN_BF16=unsupported: a search on bfloat16 tensors fails with NOT_SUPPORTED;
    // =failing: it reports every algorithm failing (read at each search: tests switch it)
    const char* bf = std::getenv("FSAD_EMU_CUDNN_BF16");
    const bool bf16 = xd && xd->set && xd->type == CUDNN_DATA_BFLOAT16;
    if (bf16 && bf && std::string(bf) == "unsupported")
        return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, std::string(fn) + ": bfloat16 refused (FSAD_EMU_CUDNN_BF16)");
    if (auto s = conv_call(fn, h, xd, x, wd, w, cd, yd, y, -1, ws, ws_bytes, nullptr, nullptr, compute)) return s;
    report(requested, returned, perf, ws_bytes, bf16 && bf && std::string(bf) == "failing");
    return CUDNN_STATUS_SUCCESS;
}
// Runs a float reference loop f(a, b, out, alpha, beta) on operands of the call's type: float
// pointers as they are; bfloat16 ones widened to float (exact), and the result rounded back to
// bfloat16 to nearest even, as cuDNN's PSEUDO_BFLOAT16_CONFIG computes (float accumulation).
// Written apart from fsad's own conversion (fsad/detail/math.hpp), so that a mistake there shows.
float widen_bf16(uint16_t b) {
    const uint32_t u = static_cast<uint32_t>(b) << 16;
    float v;
    std::memcpy(&v, &u, 4);
    return v;
}
uint16_t narrow_bf16(float v) {
    if (std::isnan(v)) return 0x7fc0;
    uint32_t u;
    std::memcpy(&u, &v, 4);
    const uint32_t kept = u >> 16, dropped = u & 0xffffu;
    const bool up = dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u));
    return static_cast<uint16_t>(kept + up);  // a carry into the exponent is the right result
}
template <class F>
void typed(const Geo& g, const void* a, size_t na, const void* b, size_t nb, void* out, size_t nout, float alpha, float beta,
           F f) {
    if (!g.bf16) {
        f(static_cast<const float*>(a), static_cast<const float*>(b), static_cast<float*>(out), alpha, beta);
        return;
    }
    auto widen = [](const void* p, size_t n) {
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = widen_bf16(static_cast<const uint16_t*>(p)[i]);
        return v;
    };
    const std::vector<float> A = widen(a, na), B = widen(b, nb);
    std::vector<float> O = beta != 0.0f ? widen(out, nout) : std::vector<float>(nout);
    f(A.data(), B.data(), O.data(), alpha, beta);
    for (size_t i = 0; i < nout; ++i) static_cast<uint16_t*>(out)[i] = narrow_bf16(O[i]);
}
// the three directions on the call's operands (x, w, y as the descriptors name them)
void fwd(const Geo& g, const void* x, const void* w, void* y, float a, float b) {
    typed(g, x, g.x_elems(), w, g.w_elems(), y, g.y_elems(), a, b,
          [&](const float* X, const float* W, float* Y, float al, float be) { conv_fwd(g, X, W, Y, al, be); });
}
void bwd_data(const Geo& g, const void* w, const void* dy, void* dx, float a, float b) {
    typed(g, w, g.w_elems(), dy, g.y_elems(), dx, g.x_elems(), a, b,
          [&](const float* W, const float* DY, float* DX, float al, float be) { conv_bwd_data(g, W, DY, DX, al, be); });
}
void bwd_filter(const Geo& g, const void* x, const void* dy, void* dw, float a, float b) {
    typed(g, x, g.x_elems(), dy, g.y_elems(), dw, g.w_elems(), a, b,
          [&](const float* X, const float* DY, float* DW, float al, float be) { conv_bwd_filter(g, X, DY, DW, al, be); });
}
}  // namespace

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(cudnnHandle_t h, cudnnTensorDescriptor_t xd, const void* x,
                                                     cudnnFilterDescriptor_t wd, const void* w,
                                                     cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, void* y,
                                                     int requested, int* returned, cudnnConvolutionFwdAlgoPerf_t* perf,
                                                     void* ws, size_t ws_bytes) {
    return conv_search("cudnnFindConvolutionForwardAlgorithmEx", h, xd, x, wd, w, cd, yd, y, requested, returned, perf, ws,
                       ws_bytes, [=](const Geo& g, float a, float b) { fwd(g, x, w, y, a, b); });
}
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(cudnnHandle_t h, cudnnFilterDescriptor_t wd, const void* w,
                                                          cudnnTensorDescriptor_t dyd, const void* dy,
                                                          cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t dxd,
                                                          void* dx, int requested, int* returned,
                                                          cudnnConvolutionBwdDataAlgoPerf_t* perf, void* ws, size_t ws_bytes) {
    return conv_search("cudnnFindConvolutionBackwardDataAlgorithmEx", h, dxd, dx, wd, w, cd, dyd, dy, requested, returned,
                       perf, ws, ws_bytes,
                       [=](const Geo& g, float a, float b) { bwd_data(g, w, dy, dx, a, b); });
}
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(cudnnHandle_t h, cudnnTensorDescriptor_t xd, const void* x,
                                                            cudnnTensorDescriptor_t dyd, const void* dy,
                                                            cudnnConvolutionDescriptor_t cd, cudnnFilterDescriptor_t dwd,
                                                            void* dw, int requested, int* returned,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* ws,
                                                            size_t ws_bytes) {
    return conv_search("cudnnFindConvolutionBackwardFilterAlgorithmEx", h, xd, x, dwd, dw, cd, dyd, dy, requested, returned,
                       perf, ws, ws_bytes,
                       [=](const Geo& g, float a, float b) { bwd_filter(g, x, dy, dw, a, b); });
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t xd, const void* x,
                                      cudnnFilterDescriptor_t wd, const void* w, cudnnConvolutionDescriptor_t cd,
                                      cudnnConvolutionFwdAlgo_t algo, void* ws, size_t ws_bytes, const void* beta,
                                      cudnnTensorDescriptor_t yd, void* y) {
    return conv_call("cudnnConvolutionForward", h, xd, x, wd, w, cd, yd, y, algo, ws, ws_bytes, alpha, beta,
                     [=](const Geo& g, float a, float b) { fwd(g, x, w, y, a, b); });
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void* alpha, cudnnFilterDescriptor_t wd, const void* w,
                                           cudnnTensorDescriptor_t dyd, const void* dy, cudnnConvolutionDescriptor_t cd,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* ws, size_t ws_bytes, const void* beta,
                                           cudnnTensorDescriptor_t dxd, void* dx) {
    return conv_call("cudnnConvolutionBackwardData", h, dxd, dx, wd, w, cd, dyd, dy, algo, ws, ws_bytes, alpha, beta,
                     [=](const Geo& g, float a, float b) { bwd_data(g, w, dy, dx, a, b); });
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t xd, const void* x,
                                             cudnnTensorDescriptor_t dyd, const void* dy, cudnnConvolutionDescriptor_t cd,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* ws, size_t ws_bytes,
                                             const void* beta, cudnnFilterDescriptor_t dwd, void* dw) {
    return conv_call("cudnnConvolutionBackwardFilter", h, xd, x, dwd, dw, cd, dyd, dy, algo, ws, ws_bytes, alpha, beta,
                     [=](const Geo& g, float a, float b) { bwd_filter(g, x, dy, dw, a, b); });
}
cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t dyd, const void* dy,
                                           const void* beta, cudnnTensorDescriptor_t dbd, void* db) {
    if (!h) return dnn_fail(CUDNN_STATUS_NOT_INITIALIZED, "cudnnConvolutionBackwardBias: null handle");
    if (!dyd || !dbd || !dyd->set || !dbd->set) return dnn_fail(CUDNN_STATUS_BAD_PARAM, "cudnnConvolutionBackwardBias: descriptor not set");
    const cudnnTensorStruct t = *dyd, b = *dbd;
    if (t.type != CUDNN_DATA_FLOAT || b.type != CUDNN_DATA_FLOAT)
        return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, "cudnnConvolutionBackwardBias: only float is emulated");
    if (b.n != 1 || b.c != t.c || b.h != 1 || b.w != 1)
        return dnn_fail(CUDNN_STATUS_BAD_PARAM, "cudnnConvolutionBackwardBias: the bias descriptor is not 1xCx1x1 of dy's C");
    const int dev = stream_device(h->stream);
    if (!check_device_range(dy, size_t(t.n) * t.c * t.h * t.w * 4, dev, "cudnnConvolutionBackwardBias: dy") ||
        !check_device_range(db, size_t(t.c) * 4, dev, "cudnnConvolutionBackwardBias: db"))
        return CUDNN_STATUS_BAD_PARAM;
    const float a = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    auto dyp = static_cast<const float*>(dy);
    auto* dbp = static_cast<float*>(db);
    return queued(submit(h->stream, [=] {
        const size_t plane = size_t(t.h) * t.w;
        for (int c = 0; c < t.c; ++c) {
            double s = 0;
            for (int n = 0; n < t.n; ++n)
                for (size_t i = 0; i < plane; ++i) s += dyp[(size_t(n) * t.c + c) * plane + i];
            dbp[c] = a * static_cast<float>(s) + (be != 0.0f ? be * dbp[c] : 0.0f);
        }
    }));
}
cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t ad, const void* a,
                             const void* beta, cudnnTensorDescriptor_t cd, void* c) {
    if (!h) return dnn_fail(CUDNN_STATUS_NOT_INITIALIZED, "cudnnAddTensor: null handle");
    if (!ad || !cd || !ad->set || !cd->set) return dnn_fail(CUDNN_STATUS_BAD_PARAM, "cudnnAddTensor: descriptor not set");
    const cudnnTensorStruct A = *ad, C = *cd;
    if (A.type != CUDNN_DATA_FLOAT || C.type != CUDNN_DATA_FLOAT)
        return dnn_fail(CUDNN_STATUS_NOT_SUPPORTED, "cudnnAddTensor: only float is emulated");
    auto fits = [](int x, int y) { return x == y || x == 1; };
    if (!fits(A.n, C.n) || !fits(A.c, C.c) || !fits(A.h, C.h) || !fits(A.w, C.w))
        return dnn_fail(CUDNN_STATUS_BAD_PARAM, "cudnnAddTensor: A's dimensions must equal C's or be 1");
    const int dev = stream_device(h->stream);
    if (!check_device_range(a, size_t(A.n) * A.c * A.h * A.w * 4, dev, "cudnnAddTensor: A") ||
        !check_device_range(c, size_t(C.n) * C.c * C.h * C.w * 4, dev, "cudnnAddTensor: C"))
        return CUDNN_STATUS_BAD_PARAM;
    const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    auto ap = static_cast<const float*>(a);
    auto* cp = static_cast<float*>(c);
    return queued(submit(h->stream, [=] {
        for (int n = 0; n < C.n; ++n)
            for (int ch = 0; ch < C.c; ++ch)
                for (int y = 0; y < C.h; ++y)
                    for (int x = 0; x < C.w; ++x) {
                        const size_t ia = ((size_t(A.n == 1 ? 0 : n) * A.c + (A.c == 1 ? 0 : ch)) * A.h + (A.h == 1 ? 0 : y)) * A.w +
                                          (A.w == 1 ? 0 : x);
                        float& o = cp[((size_t(n) * C.c + ch) * C.h + y) * C.w + x];
                        o = al * ap[ia] + (be != 0.0f ? be * o : 0.0f);
                    }
    }));
}

// ================================================================== cuBLAS (column-major)
struct cublasContext {
    cudaStream_t stream = nullptr;
};
namespace {
cublasStatus_t blas_fail(cublasStatus_t s, const std::string& what) {
    std::fprintf(stderr, "fsad CUDA emulator: cuBLAS: %s\n", what.c_str());
    return s;
}
// elements a column-major rows x cols matrix with leading dimension ld spans
size_t span(int rows, int cols, int ld) { return rows == 0 || cols == 0 ? 0 : size_t(ld) * (cols - 1) + rows; }
cublasStatus_t blas_queued(cudaError_t e) { return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED; }
}  // namespace

const char* cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
cublasStatus_t cublasGetProperty(libraryPropertyType t, int* v) {
    *v = t == MAJOR_VERSION ? 13 : 0;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasCreate(cublasHandle_t* h) { return handle_create(h, CUBLAS_STATUS_SUCCESS, CUBLAS_STATUS_NOT_INITIALIZED); }
cublasStatus_t cublasDestroy(cublasHandle_t h) { return handle_destroy(h, CUBLAS_STATUS_SUCCESS); }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    return handle_set_stream(h, s, CUBLAS_STATUS_SUCCESS, CUBLAS_STATUS_NOT_INITIALIZED);
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t) { return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta, float* C,
                           int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (ta == CUBLAS_OP_C || tb == CUBLAS_OP_C) return blas_fail(CUBLAS_STATUS_NOT_SUPPORTED, "cublasSgemm: OP_C not emulated");
    const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, ar) || ldb < std::max(1, br) || ldc < std::max(1, m))
        return blas_fail(CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm: m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " +
                                                          std::to_string(k) + ", lda " + std::to_string(lda) + ", ldb " +
                                                          std::to_string(ldb) + ", ldc " + std::to_string(ldc));
    const int dev = stream_device(h->stream);
    if (!check_device_range(A, span(ar, ac, lda) * 4, dev, "cublasSgemm: A") ||
        !check_device_range(B, span(br, bc, ldb) * 4, dev, "cublasSgemm: B") ||
        !check_device_range(C, span(m, n, ldc) * 4, dev, "cublasSgemm: C"))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *alpha, be = *beta;
    return blas_queued(submit(h->stream, [=] {
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < m; ++i) {
                float s = 0.0f;
                for (int p = 0; p < k; ++p) {
                    const float a = ta == CUBLAS_OP_N ? A[i + size_t(p) * lda] : A[p + size_t(i) * lda];
                    const float b = tb == CUBLAS_OP_N ? B[p + size_t(j) * ldb] : B[j + size_t(p) * ldb];
                    s += a * b;
                }
                float& c = C[i + size_t(j) * ldc];
                c = al * s + (be != 0.0f ? be * c : 0.0f);
            }
    }));
}

cublasStatus_t cublasStrsm(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,
                           cublasDiagType_t diag, int m, int n, const float* alpha, const float* A, int lda, float* B, int ldb) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (side != CUBLAS_SIDE_LEFT || trans == CUBLAS_OP_C || uplo == CUBLAS_FILL_MODE_FULL)
        return blas_fail(CUBLAS_STATUS_NOT_SUPPORTED, "cublasStrsm: only the left side, N or T and a triangle are emulated");
    if (m < 0 || n < 0 || lda < std::max(1, m) || ldb < std::max(1, m))
        return blas_fail(CUBLAS_STATUS_INVALID_VALUE, "cublasStrsm: bad sizes or leading dimensions");
    const int dev = stream_device(h->stream);
    if (!check_device_range(A, span(m, m, lda) * 4, dev, "cublasStrsm: A") ||
        !check_device_range(B, span(m, n, ldb) * 4, dev, "cublasStrsm: B"))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *alpha;
    // op(A) X = alpha B; op(A) is lower triangular when (uplo lower) != (transposed)
    return blas_queued(submit(h->stream, [=] {
        auto T = [&](int i, int j) { return trans == CUBLAS_OP_N ? A[i + size_t(j) * lda] : A[j + size_t(i) * lda]; };
        const bool lower = (uplo == CUBLAS_FILL_MODE_LOWER) == (trans == CUBLAS_OP_N);
        for (int j = 0; j < n; ++j) {
            float* b = B + size_t(j) * ldb;
            for (int i = 0; i < m; ++i) b[i] *= al;
            if (lower) {
                for (int i = 0; i < m; ++i) {
                    float s = b[i];
                    for (int p = 0; p < i; ++p) s -= T(i, p) * b[p];
                    b[i] = diag == CUBLAS_DIAG_UNIT ? s : s / T(i, i);
                }
            } else {
                for (int i = m - 1; i >= 0; --i) {
                    float s = b[i];
                    for (int p = i + 1; p < m; ++p) s -= T(i, p) * b[p];
                    b[i] = diag == CUBLAS_DIAG_UNIT ? s : s / T(i, i);
                }
            }
        }
    }));
}

cublasStatus_t cublasDsyrk(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans, int n, int k,
                           const double* alpha, const double* A, int lda, const double* beta, double* C, int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (trans == CUBLAS_OP_C || uplo == CUBLAS_FILL_MODE_FULL) return blas_fail(CUBLAS_STATUS_NOT_SUPPORTED, "cublasDsyrk: OP_C / FULL not emulated");
    const int ar = trans == CUBLAS_OP_N ? n : k, ac = trans == CUBLAS_OP_N ? k : n;
    if (n < 0 || k < 0 || lda < std::max(1, ar) || ldc < std::max(1, n))
        return blas_fail(CUBLAS_STATUS_INVALID_VALUE, "cublasDsyrk: bad sizes or leading dimensions");
    const int dev = stream_device(h->stream);
    if (!check_device_range(A, span(ar, ac, lda) * 8, dev, "cublasDsyrk: A") ||
        !check_device_range(C, span(n, n, ldc) * 8, dev, "cublasDsyrk: C"))
        return CUBLAS_STATUS_INVALID_VALUE;
    const double al = *alpha, be = *beta;
    // C = alpha op(A) op(A)^T + beta C, the `uplo` triangle only (the other is left as it was)
    return blas_queued(submit(h->stream, [=] {
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < n; ++i) {
                if (uplo == CUBLAS_FILL_MODE_LOWER ? i < j : i > j) continue;
                double s = 0;
                for (int p = 0; p < k; ++p) {
                    const double a = trans == CUBLAS_OP_N ? A[i + size_t(p) * lda] : A[p + size_t(i) * lda];
                    const double b = trans == CUBLAS_OP_N ? A[j + size_t(p) * lda] : A[p + size_t(j) * lda];
                    s += a * b;
                }
                double& c = C[i + size_t(j) * ldc];
                c = al * s + (be != 0.0 ? be * c : 0.0);
            }
    }));
}

// ================================================================== cuSOLVER
struct cusolverDnContext {
    cudaStream_t stream = nullptr;
};
namespace {
cusolverStatus_t solver_fail(cusolverStatus_t s, const std::string& what) {
    std::fprintf(stderr, "fsad CUDA emulator: cuSOLVER: %s\n", what.c_str());
    return s;
}
int potrf_lwork(int n) { return std::max(1, n) * 32; }
}  // namespace

cusolverStatus_t cusolverGetProperty(libraryPropertyType t, int* v) {
    *v = t == MAJOR_VERSION ? 12 : 0;
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* h) {
    return handle_create(h, CUSOLVER_STATUS_SUCCESS, CUSOLVER_STATUS_NOT_INITIALIZED);
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h) { return handle_destroy(h, CUSOLVER_STATUS_SUCCESS); }
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t h, cudaStream_t s) {
    return handle_set_stream(h, s, CUSOLVER_STATUS_SUCCESS, CUSOLVER_STATUS_NOT_INITIALIZED);
}
cusolverStatus_t cusolverDnDpotrf_bufferSize(cusolverDnHandle_t h, cublasFillMode_t uplo, int n, double*, int lda, int* lwork) {
    if (!h) return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (n < 0 || lda < std::max(1, n) || uplo == CUBLAS_FILL_MODE_FULL) return solver_fail(CUSOLVER_STATUS_INVALID_VALUE, "Dpotrf_bufferSize: bad arguments");
    *lwork = potrf_lwork(n);
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDpotrf(cusolverDnHandle_t h, cublasFillMode_t uplo, int n, double* A, int lda, double* work,
                                  int lwork, int* info) {
    if (!h) return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (n < 0 || lda < std::max(1, n) || uplo == CUBLAS_FILL_MODE_FULL) return solver_fail(CUSOLVER_STATUS_INVALID_VALUE, "Dpotrf: bad arguments");
    if (lwork < potrf_lwork(n))
        return solver_fail(CUSOLVER_STATUS_INVALID_VALUE, "Dpotrf: lwork " + std::to_string(lwork) + " < the " +
                                                              std::to_string(potrf_lwork(n)) + " Dpotrf_bufferSize gives");
    const int dev = stream_device(h->stream);
    if (!check_device_range(A, span(n, n, lda) * 8, dev, "cusolverDnDpotrf: A") ||
        !check_device_range(work, size_t(lwork) * 8, dev, "cusolverDnDpotrf: work") ||
        !check_device_range(info, sizeof(int), dev, "cusolverDnDpotrf: info"))
        return CUSOLVER_STATUS_INVALID_VALUE;
    // LAPACK's potrf on the `uplo` triangle (A = L L^T or U^T U); the other triangle is not touched;
    // info = j + 1 for the first leading minor that is not positive definite
    const cudaError_t e = submit(h->stream, [=] {
        scribble(work, size_t(lwork) * 8);
        const bool lower = uplo == CUBLAS_FILL_MODE_LOWER;
        auto at = [&](int i, int j) -> double& { return lower ? A[i + size_t(j) * lda] : A[j + size_t(i) * lda]; };  // i >= j
        *info = 0;
        for (int j = 0; j < n; ++j) {
            double d = at(j, j);
            for (int p = 0; p < j; ++p) d -= at(j, p) * at(j, p);
            if (!(d > 0.0)) {
                *info = j + 1;
                return;
            }
            const double ljj = std::sqrt(d);
            at(j, j) = ljj;
            for (int i = j + 1; i < n; ++i) {
                double s = at(i, j);
                for (int p = 0; p < j; ++p) s -= at(i, p) * at(j, p);
                at(i, j) = s / ljj;
            }
        }
    });
    return e == cudaSuccess ? CUSOLVER_STATUS_SUCCESS : CUSOLVER_STATUS_EXECUTION_FAILED;
}
