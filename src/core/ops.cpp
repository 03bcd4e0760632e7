// Front end of the ops: argument checks, output allocation, dispatch by device.
#include "fsad/core/ops.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "../cpu/kernels.hpp"
#if FSAD_WITH_CUDA
#include "../cuda/kernels.hpp"
#endif

namespace fsad::ops {
namespace {

// Every op runs on the device of its inputs: src/cpu or src/cuda, the same signatures. In a build
// without the CUDA backend a CUDA tensor cannot be created (device_malloc refuses), so the CUDA
// branch is unreachable there.
// Every dispatch is timed when this thread has a Profiler (OpTimer, below).
#if FSAD_WITH_CUDA
#define FSAD_DISPATCH(dev, op, ...)       \
    do {                                  \
        const OpTimer fsad_timer_(#op, dev); \
        if ((dev).is_cuda())              \
            cuda::op(__VA_ARGS__);        \
        else                              \
            cpu::op(__VA_ARGS__);         \
    } while (0)
#else
#define FSAD_DISPATCH(dev, op, ...)                                                            \
    do {                                                                                       \
        if ((dev).is_cuda()) throw Error(std::string(#op) + ": no CUDA backend in this build"); \
        const OpTimer fsad_timer_(#op, dev);                                                   \
        cpu::op(__VA_ARGS__);                                                                  \
    } while (0)
#endif

std::atomic<Precision> g_precision{Precision::FP32};
thread_local int t_precision = -1;  // the innermost PrecisionScope's (-1: none)

thread_local Profiler::Impl* t_profiler = nullptr;
}  // namespace

struct Profiler::Impl {
    struct Pending {  // a GPU op whose events are not read yet
        const char* op;
        int device;
        void* start;
        void* stop;
    };
    std::map<std::pair<std::string, int>, Row> rows;  // (op, device index or -1 for the CPU)
    std::vector<Pending> pending;
    int depth = 0;  // ops within ops count once
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), reported = start;

    void add(const char* op, Device dev, double ms) {
        Row& r = rows[{op, dev.is_cuda() ? dev.index : -1}];
        if (r.calls == 0) {
            r.op = op;
            r.device = dev;
        }
        ++r.calls;
        r.ms += ms;
    }
    void resolve() {
#if FSAD_WITH_CUDA
        while (!pending.empty()) {  // one at a time: a failed read leaves the rest to drop_pending
            const Pending p = pending.back();
            const double ms = cuda::event_elapsed_ms(p.start, p.stop);
            pending.pop_back();
            cuda::event_destroy(p.start);
            cuda::event_destroy(p.stop);
            add(p.op, Device::cuda(p.device), ms);
        }
#endif
    }
    void drop_pending() noexcept {
#if FSAD_WITH_CUDA
        for (const Pending& p : pending) {
            cuda::event_destroy(p.start);
            cuda::event_destroy(p.stop);
        }
#endif
        pending.clear();
    }
};

namespace {
class OpTimer {
public:
    OpTimer(const char* op, Device dev) : p_(t_profiler) {
        if (!p_ || p_->depth++ > 0) return;
        op_ = op;
        dev_ = dev;
#if FSAD_WITH_CUDA
        if (dev.is_cuda()) {
            try {
                start_ = cuda::event_record(dev.index);
            } catch (...) {  // (no GPU, say): the destructor will not run, undo the depth
                --p_->depth;
                throw;
            }
            return;
        }
#endif
        t0_ = std::chrono::steady_clock::now();
    }
    ~OpTimer() {
        if (!p_ || --p_->depth > 0) return;
#if FSAD_WITH_CUDA
        if (dev_.is_cuda()) {
            try {
                p_->pending.push_back({op_, dev_.index, start_, cuda::event_record(dev_.index)});
            } catch (...) {  // a failed record must not throw from a destructor: the op is not counted
                cuda::event_destroy(start_);
            }
            return;
        }
#endif
        p_->add(op_, dev_, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count());
    }
    OpTimer(const OpTimer&) = delete;
    OpTimer& operator=(const OpTimer&) = delete;

private:
    Profiler::Impl* p_;
    const char* op_ = nullptr;
    Device dev_;
    void* start_ = nullptr;
    std::chrono::steady_clock::time_point t0_{};
};

void need(bool cond, const char* op, const std::string& what) {
    if (!cond) throw Error(std::string(op) + ": " + what);
}
void need_defined(const Tensor& t, const char* op, const char* name) {
    need(t.defined(), op, std::string(name) + " is an undefined tensor");
}
void need_same_device(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
    need(a.device() == b.device(), op,
         std::string(an) + " is on " + a.device().str() + " but " + bn + " is on " + b.device().str());
}
void need_shape(const Tensor& t, const Shape& s, const char* op, const char* name) {
    need(t.shape() == s, op, std::string(name) + " has shape " + t.shape().str() + ", expected " + s.str());
}
void need_ndim(const Tensor& t, int nd, const char* op, const char* name) {
    need_defined(t, op, name);
    need(t.ndim() == nd, op,
         std::string(name) + " must have " + std::to_string(nd) + " dimensions, got shape " + t.shape().str());
}
Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.device()); }

Shape conv_out_shape(const Tensor& x, const Tensor& w, const Conv2dParams& p, const char* op) {
    need_ndim(x, 4, op, "input");
    need_ndim(w, 4, op, "weight");
    need_same_device(x, w, op, "input", "weight");
    need(p.groups >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.dil_h >= 1 && p.dil_w >= 1 && p.pad_h >= 0 &&
             p.pad_w >= 0,
         op, "groups, strides and dilations must be >= 1 and paddings >= 0");
    int64_t cin = x.dim(1), cout = w.dim(0);
    need(cin % p.groups == 0 && cout % p.groups == 0, op,
         "channels (in " + std::to_string(cin) + ", out " + std::to_string(cout) + ") not divisible by groups " +
             std::to_string(p.groups));
    need(w.dim(1) == cin / p.groups, op,
         "weight " + w.shape().str() + " expects " + std::to_string(w.dim(1) * p.groups) + " input channels, input " +
             x.shape().str() + " has " + std::to_string(cin));
    int64_t ho = conv_out_size(x.dim(2), static_cast<int>(w.dim(2)), p.stride_h, p.pad_h, p.dil_h);
    int64_t wo = conv_out_size(x.dim(3), static_cast<int>(w.dim(3)), p.stride_w, p.pad_w, p.dil_w);
    need(ho >= 1 && wo >= 1, op,
         "kernel " + w.shape().str() + " does not fit input " + x.shape().str() + " with this padding/dilation");
    return Shape{x.dim(0), cout, ho, wo};
}

// BatchNorm accepts [N,C,H,W] and [N,C]; returns C.
int64_t bn_check(const Tensor& x, const Tensor& gamma, const Tensor& beta, const char* op) {
    need_defined(x, op, "input");
    need(x.ndim() == 4 || x.ndim() == 2, op, "input must be [N,C,H,W] or [N,C], got " + x.shape().str());
    int64_t c = x.dim(1);
    need_shape(gamma, Shape{c}, op, "weight");
    need_shape(beta, Shape{c}, op, "bias");
    need_same_device(x, gamma, op, "input", "weight");
    return c;
}

Shape pool_out_shape(const Tensor& x, const Pool2dParams& p, const char* op) {
    need_ndim(x, 4, op, "input");
    need(p.kh >= 1 && p.kw >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.pad_h >= 0 && p.pad_w >= 0, op,
         "kernel and stride must be >= 1, padding >= 0");
    need(2 * p.pad_h <= p.kh && 2 * p.pad_w <= p.kw, op, "padding must be at most half the kernel");
    int64_t ho = conv_out_size(x.dim(2), p.kh, p.stride_h, p.pad_h, 1);
    int64_t wo = conv_out_size(x.dim(3), p.kw, p.stride_w, p.pad_w, 1);
    need(ho >= 1 && wo >= 1, op, "window does not fit input " + x.shape().str());
    return Shape{x.dim(0), x.dim(1), ho, wo};
}

void need_rows(const Tensor& x, const char* op, const char* name) {
    need_ndim(x, 2, op, name);
}

thread_local double* t_mac_counter = nullptr;
void count_macs(double m) {
    if (t_mac_counter) *t_mac_counter += m;
}
}  // namespace

namespace {
std::atomic<int> g_conv_algorithm{static_cast<int>(ConvAlgorithm::Auto)};
}
void set_conv_algorithm(ConvAlgorithm a) { g_conv_algorithm = static_cast<int>(a); }
ConvAlgorithm conv_algorithm() { return static_cast<ConvAlgorithm>(g_conv_algorithm.load()); }

MacCounter::MacCounter() { t_mac_counter = &macs_; }
MacCounter::~MacCounter() { t_mac_counter = nullptr; }

Profiler::Profiler() : impl_(std::make_unique<Impl>()) {
    if (t_profiler) throw Error("ops::Profiler: this thread already has a profiler (they do not nest)");
    t_profiler = impl_.get();
}
Profiler::~Profiler() {
    t_profiler = nullptr;
    impl_->drop_pending();
}

std::vector<Profiler::Row> Profiler::report() {
    impl_->resolve();
    impl_->reported = std::chrono::steady_clock::now();
    std::vector<Row> out;
    for (const auto& kv : impl_->rows) out.push_back(kv.second);
    std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
    return out;
}

double Profiler::wall_ms() const {
    return std::chrono::duration<double, std::milli>(impl_->reported - impl_->start).count();
}

std::string Profiler::table() {
    const std::vector<Row> rows = report();
    double total = 0;
    for (const Row& r : rows) total += r.ms;
    std::string s;
    char line[256];
    std::snprintf(line, sizeof line, "%-30s %-7s %8s %11s %11s %7s\n", "op", "device", "calls", "total ms", "ms/call",
                  "share");
    s += line;
    for (const Row& r : rows) {
        std::snprintf(line, sizeof line, "%-30s %-7s %8lld %11.3f %11.4f %6.1f%%\n", r.op.c_str(), r.device.str().c_str(),
                      static_cast<long long>(r.calls), r.ms, r.ms / static_cast<double>(r.calls),
                      total > 0 ? 100.0 * r.ms / total : 0.0);
        s += line;
    }
    std::snprintf(line, sizeof line, "%-30s %-7s %8s %11.3f\n", "all ops", "", "", total);
    s += line;
    std::snprintf(line, sizeof line, "%-30s %-7s %8s %11.3f\n", "wall time", "", "", wall_ms());
    return s + line;
}

Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) {
    Shape ys = conv_out_shape(x, w, p, "conv2d_forward");
    if (bias) {
        need_shape(*bias, Shape{w.dim(0)}, "conv2d_forward", "bias");
        need_same_device(x, *bias, "conv2d_forward", "input", "bias");
    }
    Tensor y = Tensor::empty(ys, x.device());
    count_macs(static_cast<double>(y.numel()) * static_cast<double>(w.numel() / w.dim(0)));
    FSAD_DISPATCH(x.device(), conv2d_forward, x, w, bias, p, y);
    return y;
}

namespace {
constexpr int kSamples = 64;
// how many values of w are sampled (all of them when fewer than kSamples; none off the CPU), and
// the position of sample i: spread over w, first and last included
int64_t sample_count(const Tensor& w) { return w.device().is_cpu() ? std::min<int64_t>(w.numel(), kSamples) : 0; }
int64_t sample_at(const Tensor& w, int64_t i, int64_t count) {
    return count == 1 ? 0 : i * (w.numel() - 1) / (count - 1);
}
std::vector<float> sample_values(const Tensor& w) {
    const int64_t count = sample_count(w);
    std::vector<float> s(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) s[static_cast<size_t>(i)] = w.data()[sample_at(w, i, count)];
    return s;
}
bool same_params(const Conv2dParams& a, const Conv2dParams& b) {
    return a.stride_h == b.stride_h && a.stride_w == b.stride_w && a.pad_h == b.pad_h && a.pad_w == b.pad_w &&
           a.dil_h == b.dil_h && a.dil_w == b.dil_w && a.groups == b.groups;
}
}  // namespace

PreparedConv::PreparedConv(const Tensor& w, const Conv2dParams& p) : w_(w), p_(p), sample_(sample_values(w)) {
    need_defined(w, "conv2d_prepare", "weight");
    need(w.ndim() == 4, "conv2d_prepare", "weight must be [Cout, Cin/groups, KH, KW], got " + w.shape().str());
}

void PreparedConv::check(const Tensor& w, const Conv2dParams& p, const char* op) const {
    need(w.data() == w_.data() && w.shape() == w_.shape() && w.device() == w_.device() && same_params(p, p_), op,
         "prepared weights belong to another convolution (prepared " + w_.shape().str() + " on " + w_.device().str() +
             ", called with " + w.shape().str() + " on " + w.device().str() + ")");
    // bitwise, so that a NaN written over a NaN still compares equal (no allocation: every call)
    const int64_t count = sample_count(w);
    bool same = count == static_cast<int64_t>(sample_.size());
    for (int64_t i = 0; same && i < count; ++i)
        same = std::memcmp(w.data() + sample_at(w, i, count), &sample_[static_cast<size_t>(i)], sizeof(float)) == 0;
    need(same, op,
         "the weights " + w.shape().str() +
             " changed after they were prepared for inference; prepare them again "
             "(nn::Module::prepare_inference) after changing them");
}

bool conv_packing_available() { return cpu::conv_packing_available(); }

size_t PreparedConv::bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t b = 0;
    for (const auto& f : forms_) b += f.second.bytes();
    return b;
}

Tensor conv2d_bn_eval_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, float eps, const Conv2dParams& p,
                              math::Activation act, const Tensor* residual, const PreparedConv* prepared) {
    const char* op = "conv2d_bn_eval_forward";
    Shape ys = conv_out_shape(x, w, p, op);
    if (prepared) prepared->check(w, p, op);
    const Shape c{w.dim(0)};
    need_shape(gamma, c, op, "gamma");
    need_shape(beta, c, op, "beta");
    need_shape(running_mean, c, op, "running_mean");
    need_shape(running_var, c, op, "running_var");
    need_same_device(x, gamma, op, "input", "gamma");
    need_same_device(x, beta, op, "input", "beta");
    need_same_device(x, running_mean, op, "input", "running_mean");
    need_same_device(x, running_var, op, "input", "running_var");
    if (residual) {
        need_shape(*residual, ys, op, "residual");
        need_same_device(x, *residual, op, "input", "residual");
    }
    Tensor y = Tensor::empty(ys, x.device());
    count_macs(static_cast<double>(y.numel()) * static_cast<double>(w.numel() / w.dim(0)));
    FSAD_DISPATCH(x.device(), conv2d_bn_eval_forward, x, w, gamma, beta, running_mean, running_var, eps, p, act, residual,
                  prepared, y);
    return y;
}

void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, Tensor* dx,
                     Tensor* dw, Tensor* db) {
    Shape ys = conv_out_shape(x, w, p, "conv2d_backward");
    need_defined(dy, "conv2d_backward", "grad_output");
    need_shape(dy, ys, "conv2d_backward", "grad_output");
    need_same_device(x, dy, "conv2d_backward", "input", "grad_output");
    if (dx) *dx = like(x);
    if (dw) *dw = like(w);
    if (db) *db = Tensor::empty(Shape{w.dim(0)}, x.device());
    FSAD_DISPATCH(x.device(), conv2d_backward, x, w, dy, p, dx, dw, db);
}

Tensor batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                               const Tensor& running_var, float momentum, float eps, BatchNormSaved* saved,
                               math::Activation act) {
    const char* op = "batchnorm_forward_train";
    int64_t c = bn_check(x, gamma, beta, op);
    need_shape(running_mean, Shape{c}, op, "running_mean");
    need_shape(running_var, Shape{c}, op, "running_var");
    int64_t per_channel = x.numel() / (c ? c : 1);
    need(per_channel > 1, op,
         "training mode needs more than one value per channel, got input " + x.shape().str());
    BatchNormSaved local;
    BatchNormSaved& s = saved ? *saved : local;
    s.mean = Tensor::empty(Shape{c}, x.device());
    s.invstd = Tensor::empty(Shape{c}, x.device());
    Tensor y = like(x);
    FSAD_DISPATCH(x.device(), batchnorm_forward_train, x, gamma, beta, running_mean, running_var, momentum, eps,
                  s.mean, s.invstd, y, act);
    return y;
}

Tensor batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, float eps, math::Activation act) {
    const char* op = "batchnorm_forward_eval";
    int64_t c = bn_check(x, gamma, beta, op);
    need_shape(running_mean, Shape{c}, op, "running_mean");
    need_shape(running_var, Shape{c}, op, "running_var");
    Tensor y = like(x);
    FSAD_DISPATCH(x.device(), batchnorm_forward_eval, x, gamma, beta, running_mean, running_var, eps, y, act);
    return y;
}

void batchnorm_backward_train(const Tensor& x, const Tensor& gamma, const BatchNormSaved& saved, const Tensor& dy,
                              Tensor* dx, Tensor* dgamma, Tensor* dbeta, const Tensor* y, math::Activation act) {
    const char* op = "batchnorm_backward_train";
    int64_t c = bn_check(x, gamma, gamma, op);
    if (act != math::Activation::Identity) {
        need(y != nullptr, op, "a fused activation needs the forward output");
        need_shape(*y, x.shape(), op, "output");
    }
    need_shape(saved.mean, Shape{c}, op, "saved mean");
    need_shape(saved.invstd, Shape{c}, op, "saved invstd");
    need_shape(dy, x.shape(), op, "grad_output");
    if (dx) *dx = like(x);
    if (dgamma) *dgamma = like(gamma);
    if (dbeta) *dbeta = like(gamma);
    FSAD_DISPATCH(x.device(), batchnorm_backward, x, gamma, saved.mean, saved.invstd, true, dy, y, act, dx, dgamma,
                  dbeta);
}

void batchnorm_backward_eval(const Tensor& x, const Tensor& gamma, const Tensor& running_mean,
                             const Tensor& running_var, float eps, const Tensor& dy, Tensor* dx, Tensor* dgamma,
                             Tensor* dbeta, const Tensor* y, math::Activation act) {
    const char* op = "batchnorm_backward_eval";
    int64_t c = bn_check(x, gamma, gamma, op);
    if (act != math::Activation::Identity) {
        need(y != nullptr, op, "a fused activation needs the forward output");
        need_shape(*y, x.shape(), op, "output");
    }
    need_shape(running_mean, Shape{c}, op, "running_mean");
    need_shape(running_var, Shape{c}, op, "running_var");
    need_shape(dy, x.shape(), op, "grad_output");
    need_same_device(x, running_var, op, "input", "running_var");
    // invstd from the running variance, on the statistics' device (no read-back)
    Tensor invstd = like(running_var);
    FSAD_DISPATCH(x.device(), batchnorm_invstd, running_var, eps, invstd);
    if (dx) *dx = like(x);
    if (dgamma) *dgamma = like(gamma);
    if (dbeta) *dbeta = like(gamma);
    FSAD_DISPATCH(x.device(), batchnorm_backward, x, gamma, running_mean, invstd, false, dy, y, act, dx, dgamma, dbeta);
}

Tensor activation_forward(const Tensor& x, math::Activation a) {
    need_defined(x, "activation_forward", "input");
    Tensor y = like(x);
    FSAD_DISPATCH(x.device(), activation_forward, x, a, y);
    return y;
}

Tensor activation_backward(const Tensor& y, const Tensor& dy, math::Activation a) {
    need_defined(y, "activation_backward", "output");
    need_shape(dy, y.shape(), "activation_backward", "grad_output");
    need_same_device(y, dy, "activation_backward", "output", "grad_output");
    Tensor dx = like(y);
    FSAD_DISPATCH(y.device(), activation_backward, y, dy, a, dx);
    return dx;
}

Tensor maxpool2d_forward(const Tensor& x, const Pool2dParams& p) {
    Tensor y = Tensor::empty(pool_out_shape(x, p, "maxpool2d_forward"), x.device());
    FSAD_DISPATCH(x.device(), maxpool2d_forward, x, p, y);
    return y;
}

Tensor maxpool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p) {
    need_shape(dy, pool_out_shape(x, p, "maxpool2d_backward"), "maxpool2d_backward", "grad_output");
    Tensor dx = like(x);
    FSAD_DISPATCH(x.device(), maxpool2d_backward, x, dy, p, dx);
    return dx;
}

Tensor avgpool2d_forward(const Tensor& x, const Pool2dParams& p) {
    Tensor y = Tensor::empty(pool_out_shape(x, p, "avgpool2d_forward"), x.device());
    FSAD_DISPATCH(x.device(), avgpool2d_forward, x, p, y);
    return y;
}

Tensor avgpool2d_backward(const Shape& x_shape, const Tensor& dy, const Pool2dParams& p) {
    need(x_shape.ndim() == 4, "avgpool2d_backward", "input shape must be [N,C,H,W], got " + x_shape.str());
    Tensor dx = Tensor::empty(x_shape, dy.device());
    need_shape(dy, pool_out_shape(dx, p, "avgpool2d_backward"), "avgpool2d_backward", "grad_output");
    FSAD_DISPATCH(dy.device(), avgpool2d_backward, dy, p, dx);
    return dx;
}

Tensor global_avgpool_forward(const Tensor& x) {
    need_ndim(x, 4, "global_avgpool_forward", "input");
    need(x.dim(2) * x.dim(3) > 0, "global_avgpool_forward", "empty spatial size in " + x.shape().str());
    Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(1)}, x.device());
    FSAD_DISPATCH(x.device(), global_avgpool_forward, x, y);
    return y;
}

Tensor global_avgpool_backward(const Shape& x_shape, const Tensor& dy) {
    need(x_shape.ndim() == 4, "global_avgpool_backward", "input shape must be [N,C,H,W], got " + x_shape.str());
    need_shape(dy, Shape{x_shape[0], x_shape[1]}, "global_avgpool_backward", "grad_output");
    Tensor dx = Tensor::empty(x_shape, dy.device());
    FSAD_DISPATCH(dy.device(), global_avgpool_backward, dy, dx);
    return dx;
}

Tensor axpby(float alpha, const Tensor& a, float beta, const Tensor& b) {
    need_defined(a, "axpby", "a");
    need_shape(b, a.shape(), "axpby", "b");
    need_same_device(a, b, "axpby", "a", "b");
    Tensor y = like(a);
    FSAD_DISPATCH(a.device(), axpby, alpha, a, beta, b, y);
    return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
    need_defined(a, "mul", "a");
    need_shape(b, a.shape(), "mul", "b");
    need_same_device(a, b, "mul", "a", "b");
    Tensor y = like(a);
    FSAD_DISPATCH(a.device(), mul, a, b, y);
    return y;
}

Tensor affine(const Tensor& x, float alpha, float beta) {
    need_defined(x, "affine", "input");
    Tensor y = like(x);
    FSAD_DISPATCH(x.device(), affine, x, alpha, beta, y);
    return y;
}

Tensor round_bf16(const Tensor& x) {
    need_defined(x, "round_bf16", "input");
    Tensor y = like(x);
    FSAD_DISPATCH(x.device(), round_bf16, x, y);
    return y;
}

void add_(const Tensor& y, const Tensor& x, float alpha) {
    need_defined(y, "add_", "destination");
    need(y.numel() == x.numel(), "add_", "cannot add " + x.shape().str() + " into " + y.shape().str());
    need_same_device(y, x, "add_", "destination", "source");
    FSAD_DISPATCH(y.device(), axpby, 1.0f, y, alpha, x, y);
}

Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias) {
    const char* op = "linear_forward";
    need_ndim(x, 2, op, "input");
    need_ndim(w, 2, op, "weight");
    need_same_device(x, w, op, "input", "weight");
    need(x.dim(1) == w.dim(1), op,
         "input " + x.shape().str() + " has " + std::to_string(x.dim(1)) + " features, weight " + w.shape().str() +
             " expects " + std::to_string(w.dim(1)));
    if (bias) need_shape(*bias, Shape{w.dim(0)}, op, "bias");
    Tensor y = Tensor::empty(Shape{x.dim(0), w.dim(0)}, x.device());
    count_macs(static_cast<double>(x.dim(0)) * static_cast<double>(w.numel()));
    FSAD_DISPATCH(x.device(), linear_forward, x, w, bias, y);
    return y;
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* db) {
    const char* op = "linear_backward";
    need_ndim(x, 2, op, "input");
    need_ndim(w, 2, op, "weight");
    need(x.dim(1) == w.dim(1), op, "input " + x.shape().str() + " does not match weight " + w.shape().str());
    need_shape(dy, Shape{x.dim(0), w.dim(0)}, op, "grad_output");
    if (dx) *dx = like(x);
    if (dw) *dw = like(w);
    if (db) *db = Tensor::empty(Shape{w.dim(0)}, x.device());
    FSAD_DISPATCH(x.device(), linear_backward, x, w, dy, dx, dw, db);
}

Tensor concat(const std::vector<Tensor>& xs, int dim) {
    need(!xs.empty(), "concat", "no tensors given");
    const Tensor& first = xs[0];
    need_defined(first, "concat", "tensor 0");
    int nd = first.ndim();
    if (dim < 0) dim += nd;
    need(dim >= 0 && dim < nd, "concat", "dim out of range for shape " + first.shape().str());
    Shape out = first.shape();
    out[dim] = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
        need_defined(xs[i], "concat", "a tensor");
        need_same_device(xs[i], first, "concat", "a tensor", "tensor 0");
        bool ok = xs[i].ndim() == nd;
        for (int d = 0; ok && d < nd; ++d) ok = d == dim || xs[i].dim(d) == first.dim(d);
        need(ok, "concat", "tensor " + std::to_string(i) + " has shape " + xs[i].shape().str() +
                               ", incompatible with " + first.shape().str() + " along dim " + std::to_string(dim));
        out[dim] += xs[i].dim(dim);
    }
    Tensor y = Tensor::empty(out, first.device());
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; ++d) outer *= out[d];
    for (int d = dim + 1; d < nd; ++d) inner *= out[d];
    int64_t col = 0;
    for (const Tensor& x : xs) {
        int64_t w = x.dim(dim) * inner;
        FSAD_DISPATCH(first.device(), copy_strided, x, outer, w, y, out[dim] * inner, col, true);
        col += w;
    }
    return y;
}

std::vector<Tensor> split(const Tensor& dy, int dim, const std::vector<int64_t>& sizes) {
    need_defined(dy, "split", "input");
    int nd = dy.ndim();
    if (dim < 0) dim += nd;
    need(dim >= 0 && dim < nd, "split", "dim out of range for shape " + dy.shape().str());
    int64_t total = 0;
    for (int64_t s : sizes) total += s;
    need(total == dy.dim(dim), "split", "sizes add up to " + std::to_string(total) + ", dimension " +
                                            std::to_string(dim) + " of " + dy.shape().str() + " is " +
                                            std::to_string(dy.dim(dim)));
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; ++d) outer *= dy.dim(d);
    for (int d = dim + 1; d < nd; ++d) inner *= dy.dim(d);
    std::vector<Tensor> out;
    int64_t col = 0;
    for (int64_t s : sizes) {
        Shape sh = dy.shape();
        sh[dim] = s;
        Tensor piece = Tensor::empty(sh, dy.device());
        FSAD_DISPATCH(dy.device(), copy_strided, piece, outer, s * inner, dy, dy.dim(dim) * inner, col, false);
        col += s * inner;
        out.push_back(piece);
    }
    return out;
}

Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& index) {
    need(x.defined() && x.ndim() >= 1, "gather_rows", "input must have at least one dimension");
    for (int64_t i : index)
        need(i >= 0 && i < x.dim(0), "gather_rows", "index " + std::to_string(i) + " out of range for " +
                                                         std::to_string(x.dim(0)) + " rows");
    Shape s = x.shape();
    s[0] = static_cast<int64_t>(index.size());
    Tensor y = Tensor::empty(s, x.device());
    FSAD_DISPATCH(x.device(), gather_rows, x, index, y);
    return y;
}

Tensor gather_rows_backward(const Tensor& dy, const std::vector<int64_t>& index, int64_t n_rows) {
    need(dy.defined() && dy.ndim() >= 1 && dy.dim(0) == static_cast<int64_t>(index.size()), "gather_rows_backward",
         "grad_output " + dy.shape().str() + " does not have one row per index");
    for (int64_t i : index)
        need(i >= 0 && i < n_rows, "gather_rows_backward", "index " + std::to_string(i) + " out of range");
    Shape s = dy.shape();
    s[0] = n_rows;
    Tensor dx = Tensor::zeros(s, dy.device());
    FSAD_DISPATCH(dy.device(), scatter_add_rows, dy, index, dx);
    return dx;
}

Tensor resize_bilinear(const Tensor& x, int64_t H, int64_t W) {
    need(x.defined() && x.ndim() >= 2, "resize_bilinear", "input must be [..., h, w], got " + (x.defined() ? x.shape().str() : std::string("an undefined tensor")));
    const int64_t h = x.dim(x.ndim() - 2), w = x.dim(x.ndim() - 1);
    need(h > 0 && w > 0 && H > 0 && W > 0, "resize_bilinear",
         "sizes must be positive: " + x.shape().str() + " to " + std::to_string(H) + "x" + std::to_string(W));
    Shape s = x.shape();
    s[x.ndim() - 2] = H;
    s[x.ndim() - 1] = W;
    Tensor y = Tensor::empty(s, x.device());
    if (y.numel() > 0) FSAD_DISPATCH(x.device(), resize_bilinear, x, x.numel() / (h * w), h, w, y, H, W);
    return y;
}

Tensor channels_last(const Tensor& x) {
    need_ndim(x, 4, "channels_last", "input");
    Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(2), x.dim(3), x.dim(1)}, x.device());
    if (y.numel() > 0) FSAD_DISPATCH(x.device(), channels_last, x, x.dim(0), x.dim(1), x.dim(2) * x.dim(3), y);
    return y;
}

Tensor nearest_distance(const Tensor& q, const Tensor& bank, const Tensor& bank_sqnorm) {
    need_ndim(q, 2, "nearest_distance", "queries");
    need_ndim(bank, 2, "nearest_distance", "bank");
    need(bank.dim(0) >= 1 && bank.dim(1) == q.dim(1), "nearest_distance",
         "bank " + bank.shape().str() + " must have at least one row of the queries' width " + q.shape().str());
    need_shape(bank_sqnorm, Shape{bank.dim(0)}, "nearest_distance", "bank_sqnorm");
    need_same_device(q, bank, "nearest_distance", "queries", "bank");
    need_same_device(q, bank_sqnorm, "nearest_distance", "queries", "bank_sqnorm");
    Tensor out = Tensor::empty(Shape{q.dim(0)}, q.device());
    if (q.dim(0) > 0) FSAD_DISPATCH(q.device(), nearest_distance, q, bank, bank_sqnorm, out);
    return out;
}

Tensor gaussian_blur(const Tensor& x, double sigma) {
    need(x.defined() && x.ndim() >= 2, "gaussian_blur", "input must be [..., H, W], got " + (x.defined() ? x.shape().str() : std::string("an undefined tensor")));
    need(std::isfinite(sigma) && sigma > 0, "gaussian_blur", "sigma must be positive and finite, got " + std::to_string(sigma));
    const int64_t H = x.dim(x.ndim() - 2), W = x.dim(x.ndim() - 1);
    Tensor y = like(x);
    if (y.numel() == 0) return y;
    const int64_t r = static_cast<int64_t>(4.0 * sigma + 0.5);
    std::vector<double> taps(static_cast<size_t>(2 * r + 1));
    double sum = 0;
    for (int64_t j = -r; j <= r; ++j) sum += taps[static_cast<size_t>(j + r)] = std::exp(-0.5 * double(j * j) / (sigma * sigma));
    for (double& v : taps) v /= sum;
    FSAD_DISPATCH(x.device(), gaussian_blur, x, x.numel() / (H * W), H, W, taps, y);
    return y;
}

Tensor row_max(const Tensor& x) {
    need_ndim(x, 2, "row_max", "input");
    need(x.dim(1) >= 1, "row_max", "rows must not be empty, got " + x.shape().str());
    Tensor y = Tensor::empty(Shape{x.dim(0)}, x.device());
    if (x.dim(0) > 0) FSAD_DISPATCH(x.device(), row_max, x, x.dim(0), x.dim(1), y);
    return y;
}

// ---------------------------------------------------------------- image sets
std::vector<PackedImage> pack_images(const std::vector<std::pair<int64_t, int64_t>>& sizes, int64_t* total) {
    std::vector<PackedImage> out;
    out.reserve(sizes.size());
    int64_t at = 0;
    for (const auto& [h, w] : sizes) {
        out.push_back({at, h, w});
        at += 3 * h * w;
    }
    if (total) *total = at;
    return out;
}

namespace {
// Every image a positive size, wholly inside x (a defined float tensor).
void need_images(const Tensor& x, const std::vector<PackedImage>& images, const char* op, const char* name) {
    need_defined(x, op, name);
    for (size_t i = 0; i < images.size(); ++i) {
        const PackedImage& m = images[i];
        need(m.h > 0 && m.w > 0 && m.h * m.w < (int64_t(1) << 29) && m.offset >= 0 && m.offset + 3 * m.h * m.w <= x.numel(), op,
             std::string(name) + " image " + std::to_string(i) + " ([3," + std::to_string(m.h) + "," + std::to_string(m.w) +
                 "] at " + std::to_string(m.offset) + ") does not lie within its " + std::to_string(x.numel()) + " values");
    }
    std::vector<std::pair<int64_t, int64_t>> spans;  // [begin, end) of each image
    for (const PackedImage& m : images) spans.emplace_back(m.offset, m.offset + 3 * m.h * m.w);
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
        need(spans[i].first >= spans[i - 1].second, op, std::string(name) + " images overlap (at value " + std::to_string(spans[i].first) + ")");
}
// The output of an op that keeps the layout: values outside the images are x's (copied, unless
// the images cover the whole tensor as a batch of views does).
Tensor same_layout(const Tensor& x, const std::vector<PackedImage>& images) {
    int64_t covered = 0;
    for (const PackedImage& m : images) covered += 3 * m.h * m.w;
    return covered == x.numel() ? like(x) : x.clone();  // (need_images refuses overlaps)
}
void need_per_image(size_t n, size_t images, const char* op, const char* what) {
    need(n == images, op, std::string("one ") + what + " per image expected: " + std::to_string(n) + " for " + std::to_string(images) + " images");
}
}  // namespace

Tensor crop_resize_images(const Tensor& src, const std::vector<PackedImage>& images, const std::vector<CropJob>& jobs) {
    need_images(src, images, "crop_resize_images", "source");
    std::vector<std::pair<int64_t, int64_t>> sizes;
    for (size_t j = 0; j < jobs.size(); ++j) {
        const CropJob& c = jobs[j];
        need(c.image >= 0 && c.image < static_cast<int64_t>(images.size()), "crop_resize_images",
             "job " + std::to_string(j) + " names image " + std::to_string(c.image) + " of " + std::to_string(images.size()));
        need(c.h > 0 && c.w > 0 && c.out_h > 0 && c.out_w > 0 && std::isfinite(c.y0) && std::isfinite(c.x0), "crop_resize_images",
             "job " + std::to_string(j) + ": empty crop or output");
        sizes.emplace_back(c.out_h, c.out_w);
    }
    int64_t total = 0;
    const std::vector<PackedImage> out_images = pack_images(sizes, &total);
    Tensor y = Tensor::empty(Shape{total}, src.device());
    if (total > 0) FSAD_DISPATCH(src.device(), crop_resize_images, src, images, jobs, out_images, y);
    return y;
}

Tensor rotate_images(const Tensor& x, const std::vector<PackedImage>& images, const std::vector<float>& degrees) {
    need_images(x, images, "rotate_images", "input");
    need_per_image(degrees.size(), images.size(), "rotate_images", "angle");
    for (float d : degrees) need(std::isfinite(d), "rotate_images", "angles must be finite");
    Tensor y = same_layout(x, images);
    if (!images.empty()) FSAD_DISPATCH(x.device(), rotate_images, x, images, degrees, y);
    return y;
}

Tensor colour_images(const Tensor& x, const std::vector<PackedImage>& images, const std::vector<ColourOp>& ops) {
    need_images(x, images, "colour_images", "input");
    need_per_image(ops.size(), images.size(), "colour_images", "colour op");
    for (const ColourOp& o : ops) {
        need(static_cast<int>(o.kind) >= 0 && static_cast<int>(o.kind) <= static_cast<int>(math::Colour::Grayscale) &&
                 std::isfinite(o.factor),
             "colour_images", "unknown colour op or a factor that is not finite");
        need(o.kind != math::Colour::Hue || (o.factor >= -0.5f && o.factor <= 0.5f), "colour_images",
             "hue shift " + std::to_string(o.factor) + " outside [-0.5, 0.5]");
    }
    Tensor y = same_layout(x, images);
    if (!images.empty()) FSAD_DISPATCH(x.device(), colour_images, x, images, ops, y);
    return y;
}

Tensor blur_images(const Tensor& x, const std::vector<PackedImage>& images, const std::vector<std::vector<float>>& taps) {
    need_images(x, images, "blur_images", "input");
    need_per_image(taps.size(), images.size(), "blur_images", "set of taps");
    std::vector<float> flat;
    std::vector<int64_t> starts{0};
    for (const auto& t : taps) {
        need(t.empty() || t.size() % 2 == 1, "blur_images", "taps must be of odd length, got " + std::to_string(t.size()));
        flat.insert(flat.end(), t.begin(), t.end());
        starts.push_back(static_cast<int64_t>(flat.size()));
    }
    Tensor y = same_layout(x, images);
    if (!images.empty()) FSAD_DISPATCH(x.device(), blur_images, x, images, flat, starts, y);
    return y;
}

void paste_images(const Tensor& dst, const std::vector<PackedImage>& dst_images, const Tensor& patches,
                  const std::vector<PackedImage>& patch_images, const std::vector<PasteJob>& jobs) {
    need_images(dst, dst_images, "paste_images", "destination");
    need_images(patches, patch_images, "paste_images", "patches");
    need_same_device(dst, patches, "paste_images", "destination", "patches");
    need_per_image(jobs.size(), dst_images.size(), "paste_images", "paste job");
    for (size_t i = 0; i < jobs.size(); ++i) {
        const PasteJob& j = jobs[i];
        if (j.patch < 0) continue;
        need(j.patch < static_cast<int64_t>(patch_images.size()), "paste_images",
             "job " + std::to_string(i) + " names patch " + std::to_string(j.patch) + " of " + std::to_string(patch_images.size()));
        const PackedImage& p = patch_images[static_cast<size_t>(j.patch)];
        need(j.canvas_h > 0 && j.canvas_w > 0 && j.oy >= 0 && j.ox >= 0 && j.oy + p.h <= j.canvas_h && j.ox + p.w <= j.canvas_w &&
                 std::isfinite(j.degrees),
             "paste_images", "job " + std::to_string(i) + ": the patch does not lie on its canvas");
    }
    if (!dst_images.empty()) FSAD_DISPATCH(dst.device(), paste_images, dst, dst_images, patches, patch_images, jobs);
}

Tensor imagenet_normalize(const Tensor& x) {
    need_ndim(x, 4, "imagenet_normalize", "input");
    need(x.dim(1) == 3, "imagenet_normalize", "input must be [N,3,H,W], got " + x.shape().str());
    Tensor y = like(x);
    if (y.numel() > 0) FSAD_DISPATCH(x.device(), imagenet_normalize, x, x.dim(0), x.dim(2) * x.dim(3), y);
    return y;
}

Tensor l2_normalize_forward(const Tensor& x, float eps) {
    need_rows(x, "l2_normalize_forward", "input");
    Tensor y = like(x);
    FSAD_DISPATCH(x.device(), l2_normalize_forward, x, eps, y);
    return y;
}

Tensor l2_normalize_backward(const Tensor& x, const Tensor& dy, float eps) {
    need_rows(x, "l2_normalize_backward", "input");
    need_shape(dy, x.shape(), "l2_normalize_backward", "grad_output");
    Tensor dx = like(x);
    FSAD_DISPATCH(x.device(), l2_normalize_backward, x, dy, eps, dx);
    return dx;
}

Tensor cosine_similarity_forward(const Tensor& a, const Tensor& b, float eps) {
    need_rows(a, "cosine_similarity_forward", "a");
    need_shape(b, a.shape(), "cosine_similarity_forward", "b");
    need_same_device(a, b, "cosine_similarity_forward", "a", "b");
    Tensor c = Tensor::empty(Shape{a.dim(0)}, a.device());
    FSAD_DISPATCH(a.device(), cosine_similarity_forward, a, b, eps, c);
    return c;
}

void cosine_similarity_backward(const Tensor& a, const Tensor& b, const Tensor& dc, float eps, Tensor* da,
                                Tensor* db) {
    need_rows(a, "cosine_similarity_backward", "a");
    need_shape(b, a.shape(), "cosine_similarity_backward", "b");
    need_shape(dc, Shape{a.dim(0)}, "cosine_similarity_backward", "grad_output");
    if (da) *da = like(a);
    if (db) *db = like(b);
    FSAD_DISPATCH(a.device(), cosine_similarity_backward, a, b, dc, eps, da, db);
}

Tensor sum_all(const Tensor& x) {
    need_defined(x, "sum_all", "input");
    Tensor y = Tensor::empty(Shape{1}, x.device());
    FSAD_DISPATCH(x.device(), sum_all, x, y);
    return y;
}

namespace {
void dim_split(const Shape& s, int dim, int64_t& outer, int64_t& n, int64_t& inner) {
    outer = 1;
    inner = 1;
    for (int d = 0; d < dim; ++d) outer *= s[d];
    for (int d = dim + 1; d < s.ndim(); ++d) inner *= s[d];
    n = s[dim];
}
}  // namespace

Tensor sum_dim(const Tensor& x, int dim) {
    need_defined(x, "sum_dim", "input");
    if (dim < 0) dim += x.ndim();
    need(dim >= 0 && dim < x.ndim(), "sum_dim", "dim out of range for shape " + x.shape().str());
    std::vector<int64_t> d = x.shape().vec();
    d.erase(d.begin() + dim);
    if (d.empty()) d.push_back(1);
    int64_t outer, n, inner;
    dim_split(x.shape(), dim, outer, n, inner);
    Tensor y = Tensor::empty(Shape(d), x.device());
    FSAD_DISPATCH(x.device(), sum_dim, x, outer, n, inner, y);
    return y;
}

Tensor sum_dim_backward(const Shape& x_shape, const Tensor& dy, int dim) {
    if (dim < 0) dim += x_shape.ndim();
    need(dim >= 0 && dim < x_shape.ndim(), "sum_dim_backward", "dim out of range for shape " + x_shape.str());
    int64_t outer, n, inner;
    dim_split(x_shape, dim, outer, n, inner);
    need(dy.numel() == outer * inner, "sum_dim_backward",
         "grad_output " + dy.shape().str() + " does not match input " + x_shape.str());
    Tensor dx = Tensor::empty(x_shape, dy.device());
    FSAD_DISPATCH(dy.device(), sum_dim_backward, dy, outer, n, inner, dx);
    return dx;
}

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const math::AdamStep& s) {
    int64_t n = param.numel();
    need(grad.numel() == n && m.numel() == n && v.numel() == n, "adam_step",
         "param, grad and moment buffers differ in length");
    need_same_device(param, grad, "adam_step", "param", "grad");
    FSAD_DISPATCH(param.device(), adam_step, param, grad, m, v, s);
}

void ema_update(const Tensor& target, const Tensor& online, float beta) {
    need(target.numel() == online.numel(), "ema_update",
         "target has " + std::to_string(target.numel()) + " values, online " + std::to_string(online.numel()));
    need_same_device(target, online, "ema_update", "target", "online");
    FSAD_DISPATCH(target.device(), ema_update, target, online, beta);
}

DensityFit density_fit(const Tensor& features, const DensityFitOptions& o) {
    need_ndim(features, 2, "density_fit", "features");
    need(features.dim(0) >= 1 && features.dim(1) >= 1, "density_fit",
         "need at least one sample of dimension >= 1, got features " + features.shape().str());
    need(o.ridge >= 0, "density_fit", "ridge must be >= 0, got " + std::to_string(o.ridge));
    DensityFit r;
    FSAD_DISPATCH(features.device(), density_fit, features, o, r);
    return r;
}

Tensor density_score(const Tensor& features, const DensityFit& g, DensityCache& cache, bool l2) {
    const int64_t d = static_cast<int64_t>(g.mu.size());
    need(d >= 1 && g.info == 0 && g.L.size() == static_cast<size_t>(d * d), "density_score", "the density is not fitted");
    need_ndim(features, 2, "density_score", "features");
    need(features.dim(1) == d, "density_score",
         "features " + features.shape().str() + " do not have dimension " + std::to_string(d));
    Tensor out = Tensor::empty(Shape{features.dim(0)}, features.device());
    FSAD_DISPATCH(features.device(), density_score, features, g, cache, l2, out);
    return out;
}

void set_precision(Precision p) { g_precision.store(p); }
Precision precision() { return t_precision >= 0 ? static_cast<Precision>(t_precision) : g_precision.load(); }
PrecisionScope::PrecisionScope(Precision p) : outer_(t_precision) { t_precision = static_cast<int>(p); }
PrecisionScope::~PrecisionScope() { t_precision = outer_; }
const char* precision_name(Precision p) {
    switch (p) {
        case Precision::FP32: return "fp32";
        case Precision::TF32: return "tf32";
        case Precision::BF16: return "bf16";
    }
    return "?";
}
Precision parse_precision(const std::string& name) {
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16})
        if (name == precision_name(p)) return p;
    throw Error("unknown precision '" + name + "' (expected fp32, tf32 or bf16)");
}
void set_allow_tf32(bool on) { set_precision(on ? Precision::TF32 : Precision::FP32); }
bool allow_tf32() { return precision() != Precision::FP32; }

}  // namespace fsad::ops

namespace fsad {
void Tensor::fill_(float v) const {
    if (!defined() || numel() == 0) return;
#if FSAD_WITH_CUDA
    if (device().is_cuda()) return cuda::fill(*this, v);
#else
    if (device().is_cuda()) throw Error("Tensor::fill_: no CUDA backend in this build");
#endif
    cpu::fill(data(), numel(), v);
}
}  // namespace fsad
