// Convolution through cuDNN: forward, backward-data, backward-filter (grouped and depthwise via
// the group count) and the bias gradient. The algorithm of each (shape, parameters, direction,
// precision) is chosen once by cuDNN's measured search (cudnnFind*AlgorithmEx, the fastest that
// fits the workspace limit) and cached; every call then draws on one growing workspace per device.
// Precision (ops::set_precision): FP32 runs exact float32 (CUDNN_FMA_MATH); TF32 lets cuDNN pick
// TF32 tensor-core algorithms; BF16 rounds the operands into bfloat16 scratch buffers, runs cuDNN
// with bfloat16 tensors and float32 compute (PSEUDO_BFLOAT16_CONFIG: tensor cores, float32
// accumulation) and widens the bfloat16 result into the float32 output. Where cuDNN offers no
// bfloat16 algorithm for a convolution, BF16 computes the same definition through the exact
// float32 one (operands rounded to bfloat16 values in float32, the result rounded): the same
// numbers, without tensor cores.
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

constexpr size_t kWorkspaceLimit = size_t(512) << 20;  // the most workspace an algorithm may use

struct TensorDesc {
    cudnnTensorDescriptor_t d = nullptr;
    TensorDesc(int64_t n, int64_t c, int64_t h, int64_t w, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
        FSAD_CUDNN_CHECK(cudnn_api().cudnnCreateTensorDescriptor(&d));
        FSAD_CUDNN_CHECK(cudnn_api().cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, type, static_cast<int>(n), static_cast<int>(c),
                                                    static_cast<int>(h), static_cast<int>(w)));
    }
    ~TensorDesc() { cudnn_api().cudnnDestroyTensorDescriptor(d); }
    TensorDesc(const TensorDesc&) = delete;
    TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
    cudnnFilterDescriptor_t d = nullptr;
    FilterDesc(const Tensor& w, cudnnDataType_t type) {
        FSAD_CUDNN_CHECK(cudnn_api().cudnnCreateFilterDescriptor(&d));
        FSAD_CUDNN_CHECK(cudnn_api().cudnnSetFilter4dDescriptor(d, type, CUDNN_TENSOR_NCHW, static_cast<int>(w.dim(0)),
                                                    static_cast<int>(w.dim(1)), static_cast<int>(w.dim(2)),
                                                    static_cast<int>(w.dim(3))));
    }
    ~FilterDesc() { cudnn_api().cudnnDestroyFilterDescriptor(d); }
    FilterDesc(const FilterDesc&) = delete;
    FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
    cudnnConvolutionDescriptor_t d = nullptr;
    ConvDesc(const Conv2dParams& p, bool exact) {
        FSAD_CUDNN_CHECK(cudnn_api().cudnnCreateConvolutionDescriptor(&d));
        // the compute type is float in every precision (bfloat16 tensors: PSEUDO_BFLOAT16_CONFIG)
        FSAD_CUDNN_CHECK(cudnn_api().cudnnSetConvolution2dDescriptor(d, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dil_h, p.dil_w,
                                                         CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        FSAD_CUDNN_CHECK(cudnn_api().cudnnSetConvolutionGroupCount(d, p.groups));
        FSAD_CUDNN_CHECK(cudnn_api().cudnnSetConvolutionMathType(d, exact ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));
    }
    ~ConvDesc() { cudnn_api().cudnnDestroyConvolutionDescriptor(d); }
    ConvDesc(const ConvDesc&) = delete;
    ConvDesc& operator=(const ConvDesc&) = delete;
};

// The descriptors of one convolution x [N,C,H,W] * w -> y, in the precision of the call.
struct Descs {
    ops::Precision prec;
    TensorDesc x, y;
    FilterDesc w;
    ConvDesc conv;
    Descs(const Tensor& xt, const Tensor& wt, const Tensor& yt, const Conv2dParams& p, ops::Precision pr)
        : prec(pr),
          x(xt.dim(0), xt.dim(1), xt.dim(2), xt.dim(3), type(pr)),
          y(yt.dim(0), yt.dim(1), yt.dim(2), yt.dim(3), type(pr)),
          w(wt, type(pr)),
          conv(p, pr == ops::Precision::FP32) {}
    static cudnnDataType_t type(ops::Precision p) { return p == ops::Precision::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }
};

enum class Dir { Fwd, BwdData, BwdFilter };
using Key = std::tuple<int, int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int,
                       int, int, int, int>;
struct Choice {
    int algo;  // kNoAlgo: none in this precision (BF16 only)
    size_t workspace;
    cudnnMathType_t math;  // the math type the search timed the algorithm with (set before each call)
};
constexpr int kNoAlgo = -1;

std::mutex g_cache_mu;
std::map<Key, Choice> g_cache;

Key key_of(Dir d, ops::Precision prec, const Tensor& x, const Tensor& w, const Conv2dParams& p) {
    return {static_cast<int>(d), x.device().index, static_cast<int>(prec), x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(0),
            w.dim(1), w.dim(2), w.dim(3), p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, p.groups};
}

template <class Perf>
Choice pick(const Perf* perf, int returned, ops::Precision prec, const char* what) {
    for (int i = 0; i < returned; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kWorkspaceLimit)
            // in FP32 the call stays exact whatever the search reports (as PyTorch does)
            return {static_cast<int>(perf[i].algo), perf[i].memory,
                    prec == ops::Precision::FP32 ? CUDNN_FMA_MATH : perf[i].mathType};
    if (prec == ops::Precision::BF16) return {kNoAlgo, 0, CUDNN_DEFAULT_MATH};
    throw CudaError(std::string("cuDNN found no usable ") + what + " algorithm for this convolution (" +
                    ops::precision_name(prec) + ")");
}

// Whether a search may go on to pick: an error throws, except cuDNN refusing bfloat16 tensors for
// this convolution (NOT_SUPPORTED), which BF16 answers with the float32 path.
bool searched(cudnnStatus_t s, const Descs& d, const char* call) {
    if (s == CUDNN_STATUS_SUCCESS) return true;
    if (s == CUDNN_STATUS_NOT_SUPPORTED && d.prec == ops::Precision::BF16) return false;
    throw_error(call, cudnn_api().cudnnGetErrorString(s), __FILE__, __LINE__);
}

// cudnnFind* writes its outputs while timing: callers pass scratch outputs when the real output
// is an accumulator (it never is here: all outputs are written with '=' semantics). The operands
// are device pointers of the descriptors' type (float or bfloat16).
Choice find_algo(Dir dir, Context& c, const Descs& d, const void* x, const void* w, void* y) {
    void* ws = workspace(c.device, kWorkspaceLimit);
    const size_t ws_bytes = kWorkspaceLimit;
    const Choice none{kNoAlgo, 0, CUDNN_DEFAULT_MATH};
    int returned = 0;
    if (dir == Dir::Fwd) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        const cudnnStatus_t s = cudnn_api().cudnnFindConvolutionForwardAlgorithmEx(
            c.cudnn, d.x.d, x, d.w.d, w, d.conv.d, d.y.d, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf, ws, ws_bytes);
        return searched(s, d, "cudnnFindConvolutionForwardAlgorithmEx") ? pick(perf, returned, d.prec, "forward") : none;
    }
    if (dir == Dir::BwdData) {  // x is dx, y is dy here
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        const cudnnStatus_t s = cudnn_api().cudnnFindConvolutionBackwardDataAlgorithmEx(
            c.cudnn, d.w.d, w, d.y.d, y, d.conv.d, d.x.d, const_cast<void*>(x), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
            &returned, perf, ws, ws_bytes);
        return searched(s, d, "cudnnFindConvolutionBackwardDataAlgorithmEx") ? pick(perf, returned, d.prec, "backward-data")
                                                                              : none;
    }
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];  // w is dw here
    const cudnnStatus_t s = cudnn_api().cudnnFindConvolutionBackwardFilterAlgorithmEx(
        c.cudnn, d.x.d, x, d.y.d, y, d.conv.d, d.w.d, const_cast<void*>(w), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
        &returned, perf, ws, ws_bytes);
    return searched(s, d, "cudnnFindConvolutionBackwardFilterAlgorithmEx") ? pick(perf, returned, d.prec, "backward-filter")
                                                                            : none;
}

// Whether an earlier search found no algorithm for k: BF16's fallback then skips the bfloat16
// copies it would not use.
bool known_without_algo(const Key& k) {
    std::lock_guard<std::mutex> lk(g_cache_mu);
    auto it = g_cache.find(k);
    return it != g_cache.end() && it->second.algo == kNoAlgo;
}

// The cached choice for this call, searched on its operands the first time.
Choice algo_for(Dir dir, Context& c, const Descs& d, const Key& k, const void* x, const void* w, void* y) {
    {
        std::lock_guard<std::mutex> lk(g_cache_mu);
        auto it = g_cache.find(k);
        if (it != g_cache.end()) return it->second;
    }
    Choice ch = find_algo(dir, c, d, x, w, y);
    std::lock_guard<std::mutex> lk(g_cache_mu);
    g_cache.emplace(k, ch);
    return ch;
}

// The three convolutions on device pointers of the descriptors' type: out = op(a, b). False (and
// nothing done) where cuDNN has no algorithm in the descriptors' precision (BF16 only).
bool run_forward(Context& c, const Descs& d, const Key& k, const void* x, const void* w, void* y) {
    const Choice ch = algo_for(Dir::Fwd, c, d, k, x, w, y);
    if (ch.algo == kNoAlgo) return false;
    FSAD_CUDNN_CHECK(cudnn_api().cudnnSetConvolutionMathType(d.conv.d, ch.math));
    void* ws = ch.workspace ? workspace(c.device, ch.workspace) : nullptr;
    const float one = 1.0f, zero = 0.0f;
    FSAD_CUDNN_CHECK(cudnn_api().cudnnConvolutionForward(c.cudnn, &one, d.x.d, x, d.w.d, w, d.conv.d,
                                             static_cast<cudnnConvolutionFwdAlgo_t>(ch.algo), ws, ch.workspace, &zero, d.y.d,
                                             y));
    return true;
}
bool run_backward_data(Context& c, const Descs& d, const Key& k, const void* w, const void* dy, void* dx) {
    const Choice ch = algo_for(Dir::BwdData, c, d, k, dx, w, const_cast<void*>(dy));
    if (ch.algo == kNoAlgo) return false;
    FSAD_CUDNN_CHECK(cudnn_api().cudnnSetConvolutionMathType(d.conv.d, ch.math));
    void* ws = ch.workspace ? workspace(c.device, ch.workspace) : nullptr;
    const float one = 1.0f, zero = 0.0f;
    FSAD_CUDNN_CHECK(cudnn_api().cudnnConvolutionBackwardData(c.cudnn, &one, d.w.d, w, d.y.d, dy, d.conv.d,
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(ch.algo), ws, ch.workspace,
                                                  &zero, d.x.d, dx));
    return true;
}
bool run_backward_filter(Context& c, const Descs& d, const Key& k, const void* x, const void* dy, void* dw) {
    const Choice ch = algo_for(Dir::BwdFilter, c, d, k, x, dw, const_cast<void*>(dy));
    if (ch.algo == kNoAlgo) return false;
    FSAD_CUDNN_CHECK(cudnn_api().cudnnSetConvolutionMathType(d.conv.d, ch.math));
    void* ws = ch.workspace ? workspace(c.device, ch.workspace) : nullptr;
    const float one = 1.0f, zero = 0.0f;
    FSAD_CUDNN_CHECK(cudnn_api().cudnnConvolutionBackwardFilter(c.cudnn, &one, d.x.d, x, d.y.d, dy, d.conv.d,
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(ch.algo), ws,
                                                    ch.workspace, &zero, d.w.d, dw));
    return true;
}

// BF16 without a bfloat16 algorithm: the float32 convolutions on operands rounded to bfloat16
// values (exact FP32 math), the result rounded in place afterwards by the caller.
struct Fp32Path {
    const Tensor& x;
    const Tensor& w;
    const Tensor& y;  // y or dy: the output's shape
    const Conv2dParams& p;
    Descs d{x, w, y, p, ops::Precision::FP32};
    Key key(Dir dir) const { return key_of(dir, ops::Precision::FP32, x, w, p); }
    static Tensor rounded(const Tensor& t) {
        Tensor r = Tensor::empty(t.shape(), t.device());
        round_bf16(t, r);
        return r;
    }
};

// A float32 tensor's values rounded to bfloat16, in scratch from the caching allocator (returned
// at the end of the call: stream order makes the reuse safe).
struct Bf16 : Scratch<uint16_t> {
    Bf16(Context& c, const Tensor& t) : Scratch<uint16_t>(c.device, static_cast<size_t>(t.numel())) {
        to_bf16(c.device, t.data(), p, t.numel());
    }
    Bf16(Context& c, int64_t n) : Scratch<uint16_t>(c.device, static_cast<size_t>(n)) {}  // an output
    void widen_into(const Tensor& t) const { from_bf16(dev, p, t.data(), t.numel()); }
};

// One BF16 convolution into the float32 tensor `out`: through cuDNN's bfloat16 tensors where it
// has an algorithm (try_bf16 runs it into a bfloat16 output and says whether it could), else
// through the float32 path (fp32 writes out from rounded operands), out rounded afterwards. A
// convolution known to have no bfloat16 algorithm skips the bfloat16 copies.
template <class TryBf16, class Fp32>
void bf16_into(Context& c, const Key& k, const Tensor& out, TryBf16 try_bf16, Fp32 fp32) {
    if (!known_without_algo(k)) {
        Bf16 ob(c, out.numel());
        if (try_bf16(ob.p)) {
            ob.widen_into(out);
            return;
        }
    }
    fp32();
    round_bf16(out, out);
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p, const Tensor& y) {
    if (y.numel() == 0) return;
    Context& c = context(x.device().index);
    const ops::Precision prec = ops::precision();
    Descs d(x, w, y, p, prec);
    const Key k = key_of(Dir::Fwd, prec, x, w, p);
    if (prec == ops::Precision::BF16) {
        bf16_into(
            c, k, y,
            [&](uint16_t* yb) {
                const Bf16 xb(c, x), wb(c, w);
                return run_forward(c, d, k, xb.p, wb.p, yb);
            },
            [&] {
                const Fp32Path f{x, w, y, p};
                run_forward(c, f.d, f.key(Dir::Fwd), Fp32Path::rounded(x).data(), Fp32Path::rounded(w).data(), y.data());
            });
    } else {
        run_forward(c, d, k, x.data(), w.data(), y.data());
    }
    if (bias) {
        const float one = 1.0f;
        TensorDesc b(1, bias->numel(), 1, 1);
        TensorDesc yf(y.dim(0), y.dim(1), y.dim(2), y.dim(3));
        FSAD_CUDNN_CHECK(cudnn_api().cudnnAddTensor(c.cudnn, &one, b.d, bias->data(), &one, yf.d, y.data()));
    }
}

void conv2d_bn_eval_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, float eps, const Conv2dParams& p,
                            math::Activation act, const Tensor* residual, const PreparedConv* /*prepared*/,
                            const Tensor& y) {
    // cuDNN's convolution, then batch norm, residual and activation in one pass over y, in place
    // (nothing prepared: cuDNN reads w as it is)
    conv2d_forward(x, w, nullptr, p, y);
    batchnorm_eval_residual(y, gamma, beta, running_mean, running_var, eps, residual, act, y);
}

void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, const Tensor* dx,
                     const Tensor* dw, const Tensor* db) {
    Context& c = context(x.device().index);
    const ops::Precision prec = ops::precision();
    Descs d(x, w, dy, p, prec);
    const bool want_dx = dx && dx->numel() > 0, want_dw = dw && dw->numel() > 0;
    if (prec == ops::Precision::BF16 && (want_dx || want_dw)) {
        const Key kd = key_of(Dir::BwdData, prec, x, w, p), kf = key_of(Dir::BwdFilter, prec, x, w, p);
        std::optional<Bf16> dyb;  // dy's bfloat16 copy, made once if either gradient uses it
        auto dy_bf16 = [&]() -> const Bf16& {
            if (!dyb) dyb.emplace(c, dy);
            return *dyb;
        };
        if (want_dx)
            bf16_into(
                c, kd, *dx,
                [&](uint16_t* dxb) {
                    const Bf16 wb(c, w);
                    return run_backward_data(c, d, kd, wb.p, dy_bf16().p, dxb);
                },
                [&] {
                    const Fp32Path f{x, w, dy, p};
                    run_backward_data(c, f.d, f.key(Dir::BwdData), Fp32Path::rounded(w).data(),
                                      Fp32Path::rounded(dy).data(), dx->data());
                });
        if (want_dw)
            bf16_into(
                c, kf, *dw,
                [&](uint16_t* dwb) {
                    const Bf16 xb(c, x);
                    return run_backward_filter(c, d, kf, xb.p, dy_bf16().p, dwb);
                },
                [&] {
                    const Fp32Path f{x, w, dy, p};
                    run_backward_filter(c, f.d, f.key(Dir::BwdFilter), Fp32Path::rounded(x).data(),
                                        Fp32Path::rounded(dy).data(), dw->data());
                });
    } else {
        if (want_dx) run_backward_data(c, d, key_of(Dir::BwdData, prec, x, w, p), w.data(), dy.data(), dx->data());
        if (want_dw) run_backward_filter(c, d, key_of(Dir::BwdFilter, prec, x, w, p), x.data(), dy.data(), dw->data());
    }
    if (db && db->numel() > 0) {  // float32 in every precision
        const float one = 1.0f, zero = 0.0f;
        TensorDesc b(1, db->numel(), 1, 1);
        TensorDesc dyf(dy.dim(0), dy.dim(1), dy.dim(2), dy.dim(3));
        FSAD_CUDNN_CHECK(cudnn_api().cudnnConvolutionBackwardBias(c.cudnn, &one, dyf.d, dy.data(), &zero, b.d, db->data()));
    }
}

}  // namespace fsad::cuda
