// The op front end: every op is declared once here, as a forward/backward pair on Tensors.
// Each function checks shapes and devices first (throwing fsad::Error naming the op and the
// shapes), then dispatches to the backend of the inputs' device (src/cpu, src/cuda).
//
// Gradient rule (for every *_backward here): outputs are WRITTEN (=), never accumulated.
// Accumulation across uses of a value happens in exactly one place: Var::accumulate_grad
// (include/fsad/autograd/variable.hpp). A null output pointer means "not needed".
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "fsad/detail/math.hpp"
#include "fsad/core/tensor.hpp"

namespace fsad::ops {

/// The arithmetic of convolutions and matrix products (process-wide):
///   FP32  exact float32 on every device (the default);
///   TF32  on CUDA, cuDNN and cuBLAS may use TF32 tensor cores (products of 10-bit mantissas,
///         float32 sums: about 1e-3 relative error; Ampere and later). The CPU ignores it (FP32);
///   BF16  convolutions on bfloat16 tensor cores with float32 accumulation. Forward
///         y = bf16(conv(bf16(x), bf16(w))) (+ bias in float32); backward
///         dx = bf16(conv_bwd_data(bf16(dy), bf16(w))), dw = bf16(conv_bwd_filter(bf16(x), bf16(dy))),
///         db from dy in float32; bf16() rounds to nearest even (round_bf16 below). Tensors stay
///         float32 (the convolution's operands are rounded on the way in and its result widened on
///         the way out), so parameters are float32 master weights and batch norm, losses, Adam, EMA
///         and the density keep float32/float64; matrix products run as in TF32 (CUDA).
///         The CPU computes the same definition in float32 (no faster than FP32: it gives the GPU's
///         numbers without a GPU, for parity tests and for studying bfloat16's effect on accuracy).
enum class Precision { FP32, TF32, BF16 };
void set_precision(Precision p);
Precision precision();
/// "fp32", "tf32", "bf16".
const char* precision_name(Precision p);
/// The precision of a name of precision_name; fsad::Error listing the names otherwise.
Precision parse_precision(const std::string& name);
/// Shorthands: set_precision(on ? TF32 : FP32); precision() != FP32 (matrix products in TF32).
void set_allow_tf32(bool on);
bool allow_tf32();
/// The precision of the calling thread's ops while the scope lives, whatever the process-wide
/// setting (scopes nest; other threads keep theirs). precision() returns the innermost scope's,
/// else the process-wide one. ByolOptions::precision uses it to fine-tune in one precision and
/// compute the density's features in another.
class PrecisionScope {
public:
    explicit PrecisionScope(Precision p);
    ~PrecisionScope();
    PrecisionScope(const PrecisionScope&) = delete;
    PrecisionScope& operator=(const PrecisionScope&) = delete;

private:
    int outer_;  // the scope this one replaces (-1: none)
};

struct Conv2dParams {
    int stride_h = 1, stride_w = 1;
    int pad_h = 0, pad_w = 0;
    int dil_h = 1, dil_w = 1;
    int groups = 1;
};
/// Output spatial size of a convolution / pooling window.
inline int64_t conv_out_size(int64_t in, int k, int stride, int pad, int dil) {
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// ---------------------------------------------------------------- profiling
/// Counts the multiply-adds of conv2d_forward and linear_forward calls made on this thread
/// while alive (benchmarks report GFLOP/s = 2 * MACs / time). Counters do not nest.
class MacCounter {
public:
    MacCounter();
    ~MacCounter();
    MacCounter(const MacCounter&) = delete;
    MacCounter& operator=(const MacCounter&) = delete;
    double macs() const { return macs_; }

private:
    double macs_ = 0;
};

/// Time per op of the ops that this thread runs while the profiler is alive, by op and device:
/// the wall time of the kernel call on the CPU; on a GPU the device time between two events
/// recorded around the op on the device's stream (recording waits for nothing; report() waits
/// for the device). Only the ops of this header are timed, once each (an op that calls another
/// counts as one): allocation, autograd bookkeeping and other host work between ops are the rest
/// of a step's wall time, and on a GPU that rest shows as device time missing from the total.
/// Profilers do not nest (a second one on the thread throws). Example:
///     ops::Profiler prof;  trainer.train_step(...);  std::cout << prof.table();
class Profiler {
public:
    struct Row {
        std::string op;
        Device device;
        int64_t calls = 0;
        double ms = 0;  ///< summed over the calls
    };
    Profiler();
    ~Profiler();
    Profiler(const Profiler&) = delete;
    Profiler& operator=(const Profiler&) = delete;
    /// The rows so far, largest time first (waits for the GPU work recorded so far).
    std::vector<Row> report();
    /// Wall time from the profiler's start to the end of the last report() (after the GPU work
    /// recorded by then was done): beside the ops' total, what the rest took or, on a GPU, how
    /// long the device sat idle.
    double wall_ms() const;
    /// report() as an aligned text table: op, device, calls, total ms, ms per call, share, then
    /// the ops' total and the wall time.
    std::string table();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- convolution
/// How CPU convolutions are computed. Gemm: im2col + GEMM. Winograd: F(2x2,3x3) for 3x3 stride-1
/// ungrouped convolutions (GEMM elsewhere), all three passes. Winograd4: F(4x4,3x3) for the
/// forward and backward-data passes of those layers, im2col + GEMM filter gradients. Auto
/// (default): for 3x3 stride-1 layers with wide enough rows, Winograd forward and backward-data
/// passes (4x4 tiles on planes at least 28 wide, 2x2 tiles below) and F(2x2,3x3) filter
/// gradients on planes at least 8 wide with a batch; im2col + GEMM for everything else
/// (src/cpu/conv.cpp says where each measured faster). Filter gradients of tiny planes stay on
/// GEMM: where a true filter gradient is exactly zero (a tap that only meets zeros) Winograd
/// yields rounding noise of ~1e-6 instead of 0, which Adam turns into lr-sized steps.
/// Process-wide.
enum class ConvAlgorithm { Auto, Gemm, Winograd, Winograd4 };
void set_conv_algorithm(ConvAlgorithm a);
ConvAlgorithm conv_algorithm();

/// requires x [N,Cin,H,W], w [Cout,Cin/groups,KH,KW], bias null or [Cout], Cin and Cout divisible by groups.
/// ensures  y [N,Cout,Ho,Wo] = cross-correlation as PyTorch's conv2d.
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p);
/// A convolution's weights prepared for repeated inference: the layouts the CPU kernels would
/// otherwise rebuild from w on every call (GEMM panels packed once, Winograd-transformed
/// filters), each built on its first use (the input size decides which is used) and then kept.
/// Worth it where the same weights run many times: ResNet18 inference at batch 1 runs 5-15%
/// faster (it repacks and retransforms every weight otherwise, and its narrow deep layers then
/// stay on OpenBLAS). Costs memory: up to a few times the weights' size.
/// Tied to the weights as they were when prepared: every call checks that w is the same tensor
/// (storage, shape, convolution parameters) and that 64 sampled values are unchanged, and throws
/// fsad::Error otherwise. A write that changes none of the sampled values is not detected: after
/// changing weights, prepare them again (nn::Module::prepare_inference does this for a model).
/// On CUDA nothing is prepared (cuDNN keeps no such copies); the checks still apply. Thread-safe.
class PreparedConv {
public:
    PreparedConv(const Tensor& w, const Conv2dParams& p);
    PreparedConv(const PreparedConv&) = delete;
    PreparedConv& operator=(const PreparedConv&) = delete;
    /// Throws fsad::Error naming `op` unless (w, p) is what this was prepared from (see above).
    void check(const Tensor& w, const Conv2dParams& p, const char* op) const;
    /// The backend's form number `key`, made by `make` on the first request.
    template <class Make>
    const Tensor& form(int key, Make&& make) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = forms_.find(key);
        if (it == forms_.end()) it = forms_.emplace(key, make()).first;
        return it->second;
    }
    /// Bytes held by the forms built so far.
    size_t bytes() const;

private:
    Tensor w_;
    Conv2dParams p_;
    std::vector<float> sample_;
    mutable std::mutex mu_;
    mutable std::map<int, Tensor> forms_;
};

/// Whether this build's CPU backend has fsad's packed-weights GEMM (AVX-512 builds), which
/// forward products of depth >= 128 use (convolutions of depth Cin*kh*kw >= 128, Winograd
/// products over >= 128 input channels); without it only Winograd layers gain from preparing.
bool conv_packing_available();

/// Inference only (no backward): act(batchnorm_forward_eval(conv2d_forward(x, w, null, p), ...) +
/// residual) in one op (residual optional, of the output's shape: a ResNet block's shortcut). On
/// the CPU the normalisation, the residual and the activation are applied as the convolution
/// writes its outputs (no further passes over them); nn's Conv2d + BatchNorm pairs use it in
/// evaluation mode when no gradient is being recorded. `prepared` (optional): w's prepared forms.
Tensor conv2d_bn_eval_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, float eps, const Conv2dParams& p,
                              math::Activation act = math::Activation::Identity, const Tensor* residual = nullptr,
                              const PreparedConv* prepared = nullptr);
/// requires dy [N,Cout,Ho,Wo] matching conv2d_forward(x, w, ., p).
/// ensures  *dx = dL/dx, *dw = dL/dw, *db = dL/db (each optional).
void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, Tensor* dx,
                     Tensor* dw, Tensor* db);

// ---------------------------------------------------------------- batch normalisation
// x is [N,C,H,W] (BatchNorm2d) or [N,C] (BatchNorm1d); statistics are per channel over N*H*W.
struct BatchNormSaved {
    Tensor mean;    // [C] batch mean
    Tensor invstd;  // [C] 1/sqrt(biased batch var + eps)
};
/// Training mode: normalises with batch statistics, then applies `act` (fused: one pass, and the
/// backward needs only the output), then updates the running statistics as PyTorch does:
/// running = (1-momentum)*running + momentum*batch (running_var takes the UNBIASED batch
/// variance). requires N*H*W > 1.
Tensor batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                               const Tensor& running_var, float momentum, float eps, BatchNormSaved* saved,
                               math::Activation act = math::Activation::Identity);
/// Evaluation mode: normalises with the running statistics, then applies `act`.
Tensor batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, float eps, math::Activation act = math::Activation::Identity);
/// Backward of the training-mode forward (batch statistics depend on x). With a fused
/// activation, `y` is the forward output (the activation's gradient is read from it).
void batchnorm_backward_train(const Tensor& x, const Tensor& gamma, const BatchNormSaved& saved, const Tensor& dy,
                              Tensor* dx, Tensor* dgamma, Tensor* dbeta, const Tensor* y = nullptr,
                              math::Activation act = math::Activation::Identity);
/// Backward of the evaluation-mode forward (an affine map per channel, then `act`).
void batchnorm_backward_eval(const Tensor& x, const Tensor& gamma, const Tensor& running_mean,
                             const Tensor& running_var, float eps, const Tensor& dy, Tensor* dx, Tensor* dgamma,
                             Tensor* dbeta, const Tensor* y = nullptr, math::Activation act = math::Activation::Identity);

// ---------------------------------------------------------------- activations
Tensor activation_forward(const Tensor& x, math::Activation a);
/// Takes the forward OUTPUT y.
Tensor activation_backward(const Tensor& y, const Tensor& dy, math::Activation a);

// ---------------------------------------------------------------- pooling
struct Pool2dParams {
    int kh = 2, kw = 2, stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
};
/// Max pooling (padding counts as -inf). requires x [N,C,H,W].
Tensor maxpool2d_forward(const Tensor& x, const Pool2dParams& p);
/// Recomputes the arg-max from x (no index tensor kept); ties go to the first element.
Tensor maxpool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p);
/// Average pooling, padding counted in the divisor (PyTorch's count_include_pad=True).
Tensor avgpool2d_forward(const Tensor& x, const Pool2dParams& p);
Tensor avgpool2d_backward(const Shape& x_shape, const Tensor& dy, const Pool2dParams& p);
/// [N,C,H,W] -> [N,C], mean over H*W.
Tensor global_avgpool_forward(const Tensor& x);
Tensor global_avgpool_backward(const Shape& x_shape, const Tensor& dy);

// ---------------------------------------------------------------- element-wise and scalar arithmetic
/// requires a, b same shape. ensures alpha*a + beta*b.
Tensor axpby(float alpha, const Tensor& a, float beta, const Tensor& b);
inline Tensor add(const Tensor& a, const Tensor& b) { return axpby(1.0f, a, 1.0f, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return axpby(1.0f, a, -1.0f, b); }
/// Element-wise product, same shapes.
Tensor mul(const Tensor& a, const Tensor& b);
/// alpha*x + beta (scalar arithmetic).
Tensor affine(const Tensor& x, float alpha, float beta);
/// Every value rounded to the nearest bfloat16 (math::round_bf16: ties to even, NaN stays NaN),
/// kept in float32: what Precision::BF16 does to a convolution's operands and results.
Tensor round_bf16(const Tensor& x);
/// y += alpha * x in place (same shape). Used for gradient accumulation.
void add_(const Tensor& y, const Tensor& x, float alpha = 1.0f);

// ---------------------------------------------------------------- linear
/// requires x [N,in], w [out,in], bias null or [out]. ensures y [N,out] = x w^T + b.
Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias);
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* db);

// ---------------------------------------------------------------- shape ops
/// Concatenates along `dim`; all other dimensions must agree.
Tensor concat(const std::vector<Tensor>& xs, int dim);
/// Inverse of concat: splits dy along `dim` into pieces of the given sizes.
std::vector<Tensor> split(const Tensor& dy, int dim, const std::vector<int64_t>& sizes);
/// Rows of x (dim 0) at `index`; index values must be in [0, N).
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& index);
/// dx [n_rows, ...] with dx[index[i]] += dy[i] (zero elsewhere).
Tensor gather_rows_backward(const Tensor& dy, const std::vector<int64_t>& index, int64_t n_rows);

// ---------------------------------------------------------------- row-wise vector ops, x [N,D]
/// y_i = x_i / max(|x_i|, eps) (PyTorch's F.normalize).
Tensor l2_normalize_forward(const Tensor& x, float eps);
Tensor l2_normalize_backward(const Tensor& x, const Tensor& dy, float eps);
/// c_i = a_i.b_i / max(|a_i||b_i|, eps) -> [N] (PyTorch's F.cosine_similarity, dim=1).
Tensor cosine_similarity_forward(const Tensor& a, const Tensor& b, float eps);
void cosine_similarity_backward(const Tensor& a, const Tensor& b, const Tensor& dc, float eps, Tensor* da,
                                Tensor* db);

// ---------------------------------------------------------------- reductions
/// Sum of all elements -> [1].
Tensor sum_all(const Tensor& x);
/// Sum over dimension `dim` (removed from the shape).
Tensor sum_dim(const Tensor& x, int dim);
/// Gradient of sum_dim: broadcast dy back over `dim` of x_shape.
Tensor sum_dim_backward(const Shape& x_shape, const Tensor& dy, int dim);

// ---------------------------------------------------------------- patch scorers (forward only)
/// x [..., h, w] -> [..., H, W]: each plane resized bilinearly with half-pixel centres, no
/// antialiasing (PyTorch's F.interpolate(mode="bilinear", align_corners=False)).
/// requires x.ndim() >= 2, h, w, H, W >= 1.
Tensor resize_bilinear(const Tensor& x, int64_t H, int64_t W);
/// x [N, C, H, W] -> [N, H, W, C] (channels last): with a reshape, one row per position.
Tensor channels_last(const Tensor& x);
/// Euclidean distance of each row of q [P, C] to its nearest row of bank [M, C] -> [P];
/// bank_sqnorm [M] holds |b_j|^2. The nearest row is found through |b|^2 - 2 q.b (matrix
/// products) and its distance computed directly. requires M >= 1, all three on one device.
Tensor nearest_distance(const Tensor& q, const Tensor& bank, const Tensor& bank_sqnorm);
/// x [..., H, W] -> the same shape, each plane blurred by a Gaussian of `sigma` px as
/// scipy.ndimage.gaussian_filter by default: radius round(4 sigma), 'reflect' borders, axis H
/// first, then W, weights normalised to sum 1 (sums in double). requires sigma > 0.
Tensor gaussian_blur(const Tensor& x, double sigma);
/// x [R, K] -> [R]: each row's maximum (NaN when the row has a NaN). requires K >= 1.
Tensor row_max(const Tensor& x);

// ---------------------------------------------------------------- image sets (augmentation, forward only)
// The fine-tuning's views made where the network runs (method/augment.hpp's augment_views): each
// op works on RGB images [3,h,w] in [0,1] packed one after another in one flat tensor (sizes may
// differ; a list of PackedImage says where each is), with parameters per image, so that one
// launch serves a batch of views. imgproc/transforms.hpp's per-image functions are the
// definitions: both compute through the same functions of detail/math.hpp. An op that keeps the
// layout leaves values outside the images as they were.
struct PackedImage {
    int64_t offset = 0, h = 0, w = 0;  ///< the image [3,h,w] starts `offset` floats into the tensor
};
/// Images of sizes (h, w) packed in order; `total` (optional) gets the floats they need.
std::vector<PackedImage> pack_images(const std::vector<std::pair<int64_t, int64_t>>& sizes, int64_t* total = nullptr);

struct CropJob {
    int64_t image = 0;                    ///< which source image
    double y0 = 0, x0 = 0, h = 0, w = 0;  ///< the region in fractional pixels (imgproc::crop_resize)
    int64_t out_h = 0, out_w = 0;
    bool hflip = false, vflip = false;    ///< the crop then flipped (imgproc::flip)
};
/// The jobs' crops, resized and flipped, packed in job order (pack_images of their out sizes).
Tensor crop_resize_images(const Tensor& src, const std::vector<PackedImage>& images, const std::vector<CropJob>& jobs);
/// Image i rotated by degrees[i] about its centre (imgproc::rotate); the same layout.
Tensor rotate_images(const Tensor& x, const std::vector<PackedImage>& images, const std::vector<float>& degrees);
struct ColourOp {
    math::Colour kind = math::Colour::None;  ///< brightness, contrast, saturation, hue, grayscale or none
    float factor = 0;                        ///< the factor (hue: the shift)
};
/// Image i transformed by ops[i] (imgproc::adjust_brightness, _contrast, _saturation, _hue,
/// to_grayscale); the same layout.
Tensor colour_images(const Tensor& x, const std::vector<PackedImage>& images, const std::vector<ColourOp>& ops);
/// Image i filtered by the separable taps[i] (odd length, along x then y, mirror borders, as
/// imgproc::gaussian_blur with imgproc::gaussian_taps); empty taps: copied.
Tensor blur_images(const Tensor& x, const std::vector<PackedImage>& images, const std::vector<std::vector<float>>& taps);
struct PasteJob {
    int64_t patch = -1;                   ///< which patch; -1: the destination image is left alone
    int64_t canvas_h = 0, canvas_w = 0;   ///< a zero canvas with the patch at (oy, ox) on it
    int64_t oy = 0, ox = 0;
    bool rotate = false;                  ///< the canvas rotated by `degrees` (math::canvas_at)
    float degrees = 0;
    int64_t dy = 0, dx = 0;               ///< the canvas's origin in the destination image
};
/// In place: destination image i gets the covered pixels of jobs[i]'s canvas (CutPaste, scar).
void paste_images(const Tensor& dst, const std::vector<PackedImage>& dst_images, const Tensor& patches,
                  const std::vector<PackedImage>& patch_images, const std::vector<PasteJob>& jobs);
/// x [N,3,H,W] -> (x - mean_c) / std_c with ImageNet's mean and std (imgproc::imagenet_normalize).
Tensor imagenet_normalize(const Tensor& x);

// ---------------------------------------------------------------- optimiser kernels (flat buffers)
/// One Adam step over flat buffers of equal length.
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const math::AdamStep& s);
/// target <- beta*target + (1-beta)*online over flat buffers.
void ema_update(const Tensor& target, const Tensor& online, float beta);

// ---------------------------------------------------------------- Gaussian density
// The statistics of method::GaussianDensity (include/fsad/method/density.hpp states the maths),
// in double precision on the features' device; what they produce lives on the host.
struct DensityFitOptions {
    bool l2_normalize = true;  ///< rows scaled to unit length first (as F.normalize)
    bool ledoit_wolf = true;   ///< Sigma = (1-s) S + s tr(S)/d I (math::ledoit_wolf_from_moments); else S + ridge I
    double ridge = 0;          ///< >= 0
};
struct DensityFit {
    std::vector<double> mu, L;  ///< mean [d]; lower Cholesky factor of Sigma, row-major [d, d]
    double shrinkage = 0;       ///< Ledoit-Wolf's s; 0 for ridge
    int info = 0;               ///< potrf's: 0, or the order of a leading minor of Sigma that is not positive
    /// The low-rank form, made by CPU fits of n < d/2 samples (low_rank = n; else 0): Sigma =
    /// alpha I + beta Xc^T Xc, scored through Woodbury with the centred samples Xc [n, d] and the
    /// lower factor Lk [n, n] of K = (alpha/beta) I_n + Xc Xc^T (O(n d) per feature, not O(d^2)).
    int64_t low_rank = 0;
    double alpha = 0;
    std::vector<double> Xc, Lk;
};
/// What scoring derives from a DensityFit on first use, once (thread-safe): L^-1 for CPU
/// scoring through the full factor; float32 mu and L on each CUDA device that scored.
struct DensityCache {
    std::once_flag once;
    std::vector<double> Linv;
    std::mutex mutex;
    std::map<int, std::pair<Tensor, Tensor>> by_device;
};
/// Mean, shrunk covariance and its Cholesky factor of features [n, d].
/// requires n, d >= 1, every value finite (else throws naming the first bad row), ridge >= 0.
/// ensures the result's info != 0 when Sigma is not positive definite (mu and L then unusable).
DensityFit density_fit(const Tensor& features, const DensityFitOptions& o);
/// Mahalanobis distances |L^-1 (x - mu)| of features [m, d] (rows normalised first when l2) -> [m]
/// on their device: the CPU in double (through the low-rank form when g has it), CUDA in float32
/// (one triangular solve per batch).
/// requires g fitted (info 0) in d dimensions; `cache` belongs to g (a fresh one when g changes).
Tensor density_score(const Tensor& features, const DensityFit& g, DensityCache& cache, bool l2);

}  // namespace fsad::ops
