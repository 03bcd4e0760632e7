// BYOL fine-tuning with the paper's losses (Sec. 3, METHOD.md): an online network (backbone f,
// projector g, predictor q) trained with Adam, a target network (backbone + projector) that is
// the exponential moving average of the online one, and the loss
//   L = L_con + lambda_pp * L_pp (or the fixed-centre loss) + lambda_np * L_np.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "fsad/core/ops.hpp"
#include "fsad/method/augment.hpp"
#include "fsad/nn/backbones.hpp"
#include "fsad/nn/optim.hpp"

namespace fsad::method {

enum class PairLoss { None, CrossInstance, FixedCentre };

struct ByolOptions {
    int64_t steps = 200;
    int64_t batch = 64;
    float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.99f, eps = 1e-8f, weight_decay = 0.0f;
    float ema = 0.99f;
    bool ema_cosine = false;  ///< BYOL's schedule: beta_k = 1 - (1 - ema)(cos(pi k / K) + 1)/2
    bool contrastive = true;  ///< L_con on/off (Table 5)
    PairLoss pair = PairLoss::CrossInstance;
    float lambda_pp = 0.8f;
    Negative negative = Negative::None;
    float lambda_np = 0.6f;
    int64_t hidden = 4096, projection = 256;  ///< BYOL's projector/predictor sizes
    AugmentOptions augment;                   ///< the regular augmentation t (size = working resolution)
    /// Keep the backbones' BatchNorm in evaluation mode while fine-tuning (running statistics
    /// frozen, affine parameters still trained). Not the paper's setting (METHOD.md: training
    /// mode); an option for few-shot data whose batch statistics are unrepresentative.
    bool freeze_backbone_bn = false;
    /// Backbone stages kept as they are (nn::Backbone::freeze_stages: the stem and the first k
    /// stages, parameters and BatchNorm statistics); 0 = the paper's setting, all adapted.
    int64_t frozen_stages = 0;
    uint64_t seed = 0;
    /// Where the networks live and the steps run (Device::cuda(i) with the CUDA backend).
    Device device = Device::cpu();
    /// On a GPU, make the views there (augment_images, negative_images: the shots are copied
    /// once, each step's random draws are made on the host and applied by a few kernels over the
    /// whole batch). false: augmented on the CPU and copied over, as on the CPU. The draws are the
    /// same either way; the views agree to rounding. (The device's copy is made again when a step
    /// is given other shot tensors, not when the pixels of the same tensors change in place.)
    bool augment_on_device = true;
    /// fit(): prepare the next step's views on the CPU (augmentation, normalisation) on a second
    /// host thread while the current step runs. Auto = on a GPU whose views are made on the CPU
    /// (the CPU is otherwise idle while the device computes), off otherwise (on the CPU both would
    /// compete for the same cores; views made on the device need no CPU time). The views, and so
    /// the results, are the same either way: the random draws happen in the same order. Views made
    /// on the device are never prefetched (one host thread drives the device).
    enum class Prefetch { Auto, On, Off } prefetch = Prefetch::Auto;
    /// The arithmetic of the fine-tuning steps (ops::PrecisionScope around each); unset = the
    /// process-wide ops::precision(). BF16 here with FP32 process-wide fine-tunes on bfloat16
    /// tensor cores and leaves the density's and the scores' features exact.
    std::optional<ops::Precision> precision;
};

struct StepStats {
    int64_t step = 0;
    float loss = 0, con = 0, pair = 0, neg = 0;
};

/// Projector g and predictor q of BYOL, and the online/target pair.
class OnlineNetwork : public nn::Module {
public:
    OnlineNetwork(std::shared_ptr<nn::Backbone> backbone, int64_t hidden, int64_t projection, Rng& rng);
    std::shared_ptr<nn::Backbone> backbone;
    std::shared_ptr<nn::MLP> projector, predictor;
};
class TargetNetwork : public nn::Module {
public:
    TargetNetwork(std::shared_ptr<nn::Backbone> backbone, int64_t hidden, int64_t projection, Rng& rng);
    std::shared_ptr<nn::Backbone> backbone;
    std::shared_ptr<nn::MLP> projector;
};

class ByolTrainer {
public:
    /// `backbone` is fine-tuned in place (it stays the caller's). `make_target` builds a second
    /// backbone of the same architecture (the target; its values are copied from the online one).
    ByolTrainer(std::shared_ptr<nn::Backbone> backbone, std::function<std::shared_ptr<nn::Backbone>()> make_target,
                const ByolOptions& opt);
    /// One optimisation step on a batch drawn from `shots` (RGB [3,H,W] in [0,1]). Throws
    /// fsad::Error naming the step when the loss or the features stop being finite.
    StepStats step(const std::vector<Tensor>& shots);
    /// The optimisation step on prepared, ImageNet-normalised views x1, x2 [B,3,S,S], the negative
    /// views xn (or null) and the L_pp permutation `perm` of 0..B-1 (ignored without L_pp).
    StepStats train_step(const Tensor& x1, const Tensor& x2, const Tensor* xn, const std::vector<int64_t>& perm);
    /// All opt.steps steps; `progress` (optional) is called after each. See ByolOptions::prefetch.
    void fit(const std::vector<Tensor>& shots, const std::function<void(const StepStats&)>& progress = {});
    int64_t steps_done() const { return step_; }
    /// Copies the online backbone + projector into the target (done at construction; call again
    /// after loading online weights).
    void sync_target();
    OnlineNetwork& online() { return *online_; }
    TargetNetwork& target() { return *target_; }

    /// Indices of a batch drawn from n shots: consecutive random permutations of 0..n-1, so every
    /// shot appears before any repeats.
    static std::vector<int64_t> draw_batch(int64_t n, int64_t batch, Rng& rng);

private:
    struct Views {  // one step's input on the host: normalised views and the L_pp permutation
        Tensor x1, x2, xn;
        std::vector<int64_t> perm;
    };
    Views prepare_views(const std::vector<Tensor>& shots);  // draws from rng_: call in step order
    bool views_on_device() const { return opt_.device.is_cuda() && opt_.augment_on_device; }
    // the shots packed on the device (augment_on_device), made again when step() is given other
    // tensors (their pixels changed in place are not seen)
    struct PackedShots {
        std::vector<Tensor> source;  // the host tensors they were copied from (held: their memory
                                     // cannot be reused by other shots while they are compared)
        Tensor packed;
        std::vector<ops::PackedImage> images;
    };
    const PackedShots& packed_shots(const std::vector<Tensor>& shots);
    PackedShots packed_;
    StepStats run_views(const Views& v);

    ByolOptions opt_;
    std::shared_ptr<OnlineNetwork> online_;
    std::shared_ptr<TargetNetwork> target_;
    std::unique_ptr<nn::Adam> adam_;
    Rng rng_;
    int64_t step_ = 0;
    Tensor centre_;  // fixed-centre loss: mean of the first step's backbone features
};

/// ImageNet-normalised batch [N,3,S,S] from images [3,S,S] in [0,1].
Tensor normalized_batch(const std::vector<Tensor>& images);

}  // namespace fsad::method
