// Convolution through cuDNN: forward, backward-data, backward-filter (grouped and depthwise via
// the group count) and the bias gradient. The algorithm of each (shape, parameters, direction)
// is chosen once by cuDNN's measured search (cudnnFind*AlgorithmEx, the fastest that fits the
// workspace limit) and cached; every call then draws on one growing workspace per device.
// Math mode: exact FP32 (CUDNN_FMA_MATH) unless ops::set_allow_tf32(true).
#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

constexpr size_t kWorkspaceLimit = size_t(512) << 20;  // the most workspace an algorithm may use

struct TensorDesc {
    cudnnTensorDescriptor_t d = nullptr;
    TensorDesc(int64_t n, int64_t c, int64_t h, int64_t w) {
        FSAD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
        FSAD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, static_cast<int>(n),
                                                    static_cast<int>(c), static_cast<int>(h), static_cast<int>(w)));
    }
    ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
    TensorDesc(const TensorDesc&) = delete;
    TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
    cudnnFilterDescriptor_t d = nullptr;
    explicit FilterDesc(const Tensor& w) {
        FSAD_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
        FSAD_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, static_cast<int>(w.dim(0)),
                                                    static_cast<int>(w.dim(1)), static_cast<int>(w.dim(2)),
                                                    static_cast<int>(w.dim(3))));
    }
    ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
    FilterDesc(const FilterDesc&) = delete;
    FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
    cudnnConvolutionDescriptor_t d = nullptr;
    explicit ConvDesc(const Conv2dParams& p) {
        FSAD_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
        FSAD_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dil_h, p.dil_w,
                                                         CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        FSAD_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, p.groups));
        FSAD_CUDNN_CHECK(cudnnSetConvolutionMathType(d, ops::allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    }
    ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
    ConvDesc(const ConvDesc&) = delete;
    ConvDesc& operator=(const ConvDesc&) = delete;
};

struct Descs {
    TensorDesc x, y;
    FilterDesc w;
    ConvDesc conv;
    Descs(const Tensor& xt, const Tensor& wt, const Tensor& yt, const Conv2dParams& p)
        : x(xt.dim(0), xt.dim(1), xt.dim(2), xt.dim(3)), y(yt.dim(0), yt.dim(1), yt.dim(2), yt.dim(3)), w(wt), conv(p) {}
};

enum class Dir { Fwd, BwdData, BwdFilter };
using Key = std::tuple<int, int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int,
                       int, int, int, int>;
struct Choice {
    int algo;
    size_t workspace;
    cudnnMathType_t math;  // the math type the search timed the algorithm with (set before each call)
};

std::mutex g_cache_mu;
std::map<Key, Choice> g_cache;

Key key_of(Dir d, const Tensor& x, const Tensor& w, const Conv2dParams& p) {
    return {static_cast<int>(d), x.device().index, ops::allow_tf32(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(0),
            w.dim(1), w.dim(2), w.dim(3), p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, p.groups};
}

template <class Perf>
Choice pick(const Perf* perf, int returned, const char* what) {
    for (int i = 0; i < returned; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kWorkspaceLimit)
            // without TF32 the call stays exact FP32 whatever the search reports (as PyTorch does)
            return {static_cast<int>(perf[i].algo), perf[i].memory, ops::allow_tf32() ? perf[i].mathType : CUDNN_FMA_MATH};
    throw CudaError(std::string("cuDNN found no usable ") + what + " algorithm for this convolution");
}

// cudnnFind* writes its outputs while timing: callers pass scratch outputs when the real output
// is an accumulator (it never is here: all outputs are written with '=' semantics).
Choice find_algo(Dir dir, Context& c, const Descs& d, const Tensor& x, const Tensor& w, const Tensor& y) {
    void* ws = workspace(c.device, kWorkspaceLimit);
    const size_t ws_bytes = kWorkspaceLimit;
    int returned = 0;
    if (dir == Dir::Fwd) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        FSAD_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(c.cudnn, d.x.d, x.data(), d.w.d, w.data(), d.conv.d, d.y.d,
                                                                y.data(), CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf,
                                                                ws, ws_bytes));
        return pick(perf, returned, "forward");
    }
    if (dir == Dir::BwdData) {  // x is dx, y is dy here
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        FSAD_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(c.cudnn, d.w.d, w.data(), d.y.d, y.data(), d.conv.d,
                                                                     d.x.d, x.data(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                                     &returned, perf, ws, ws_bytes));
        return pick(perf, returned, "backward-data");
    }
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];  // w is dw here
    FSAD_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(c.cudnn, d.x.d, x.data(), d.y.d, y.data(), d.conv.d, d.w.d,
                                                                   w.data(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                   &returned, perf, ws, ws_bytes));
    return pick(perf, returned, "backward-filter");
}

Choice algo_for(Dir dir, Context& c, const Descs& d, const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
    const Key k = key_of(dir, x, w, p);
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

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p, const Tensor& y) {
    if (y.numel() == 0) return;
    Context& c = context(x.device().index);
    Descs d(x, w, y, p);
    const Choice ch = algo_for(Dir::Fwd, c, d, x, w, y, p);
    FSAD_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.d, ch.math));
    void* ws = ch.workspace ? workspace(c.device, ch.workspace) : nullptr;
    const float one = 1.0f, zero = 0.0f;
    FSAD_CUDNN_CHECK(cudnnConvolutionForward(c.cudnn, &one, d.x.d, x.data(), d.w.d, w.data(), d.conv.d,
                                             static_cast<cudnnConvolutionFwdAlgo_t>(ch.algo), ws, ch.workspace, &zero, d.y.d,
                                             y.data()));
    if (bias) {
        TensorDesc b(1, bias->numel(), 1, 1);
        FSAD_CUDNN_CHECK(cudnnAddTensor(c.cudnn, &one, b.d, bias->data(), &one, d.y.d, y.data()));
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
    Descs d(x, w, dy, p);
    const float one = 1.0f, zero = 0.0f;
    if (dx && dx->numel() > 0) {
        const Choice ch = algo_for(Dir::BwdData, c, d, *dx, w, dy, p);
        FSAD_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.d, ch.math));
        void* ws = ch.workspace ? workspace(c.device, ch.workspace) : nullptr;
        FSAD_CUDNN_CHECK(cudnnConvolutionBackwardData(c.cudnn, &one, d.w.d, w.data(), d.y.d, dy.data(), d.conv.d,
                                                      static_cast<cudnnConvolutionBwdDataAlgo_t>(ch.algo), ws, ch.workspace,
                                                      &zero, d.x.d, dx->data()));
    }
    if (dw && dw->numel() > 0) {
        const Choice ch = algo_for(Dir::BwdFilter, c, d, x, *dw, dy, p);
        FSAD_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.d, ch.math));
        void* ws = ch.workspace ? workspace(c.device, ch.workspace) : nullptr;
        FSAD_CUDNN_CHECK(cudnnConvolutionBackwardFilter(c.cudnn, &one, d.x.d, x.data(), d.y.d, dy.data(), d.conv.d,
                                                        static_cast<cudnnConvolutionBwdFilterAlgo_t>(ch.algo), ws,
                                                        ch.workspace, &zero, d.w.d, dw->data()));
    }
    if (db && db->numel() > 0) {
        TensorDesc b(1, db->numel(), 1, 1);
        FSAD_CUDNN_CHECK(cudnnConvolutionBackwardBias(c.cudnn, &one, d.y.d, dy.data(), &zero, b.d, db->data()));
    }
}

}  // namespace fsad::cuda
