#include "fsad/method/byol.hpp"

#include <algorithm>
#include <cmath>
#include <future>
#include <numbers>

#include "fsad/core/parallel.hpp"
#include "fsad/imgproc/transforms.hpp"
#include "fsad/io/image.hpp"
#include "fsad/method/losses.hpp"

namespace fsad::method {

OnlineNetwork::OnlineNetwork(std::shared_ptr<nn::Backbone> b, int64_t hidden, int64_t projection, Rng& rng) {
    backbone = register_module("backbone", std::move(b));
    projector = register_module("projector", std::make_shared<nn::MLP>(backbone->feature_dim(), hidden, projection, rng));
    predictor = register_module("predictor", std::make_shared<nn::MLP>(projection, hidden, projection, rng));
    flatten();
}

TargetNetwork::TargetNetwork(std::shared_ptr<nn::Backbone> b, int64_t hidden, int64_t projection, Rng& rng) {
    backbone = register_module("backbone", std::move(b));
    projector = register_module("projector", std::make_shared<nn::MLP>(backbone->feature_dim(), hidden, projection, rng));
    flatten();
}

Tensor normalized_batch(const std::vector<Tensor>& images) {
    FSAD_CHECK(!images.empty(), "normalized_batch: no images");
    const Shape s = images[0].shape();
    FSAD_CHECK(s.ndim() == 3, "normalized_batch: images must be [3,H,W], got ", s.str());
    for (size_t i = 1; i < images.size(); ++i)
        FSAD_CHECK(images[i].shape() == s, "normalized_batch: image ", i, " is ", images[i].shape().str(), ", image 0 is ",
                   s.str());
    // normalised straight into the batch (no per-image tensors, no concatenation pass)
    Tensor out = Tensor::empty(Shape{static_cast<int64_t>(images.size()), s[0], s[1], s[2]});
    const int64_t per = s[0] * s[1] * s[2];
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < images.size(); ++i) io::imagenet_normalize_into(images[i], out.data() + static_cast<int64_t>(i) * per);
    return out;
}

std::vector<int64_t> ByolTrainer::draw_batch(int64_t n, int64_t batch, Rng& rng) {
    FSAD_CHECK(n > 0 && batch > 0, "draw_batch: need shots and a positive batch size");
    std::vector<int64_t> out, perm(static_cast<size_t>(n));
    while (static_cast<int64_t>(out.size()) < batch) {
        for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
        std::shuffle(perm.begin(), perm.end(), rng.engine());
        for (int64_t i = 0; i < n && static_cast<int64_t>(out.size()) < batch; ++i) out.push_back(perm[static_cast<size_t>(i)]);
    }
    return out;
}

ByolTrainer::ByolTrainer(std::shared_ptr<nn::Backbone> backbone,
                         std::function<std::shared_ptr<nn::Backbone>()> make_target, const ByolOptions& opt)
    : opt_(opt), rng_(opt.seed) {
    FSAD_CHECK(opt.steps >= 0 && opt.batch >= 2, "ByolTrainer: steps >= 0 and batch >= 2 required (batch norm needs 2)");
    FSAD_CHECK(opt.ema >= 0.0f && opt.ema <= 1.0f, "ByolTrainer: ema must lie in [0, 1], got ", opt.ema);
    FSAD_CHECK(opt.frozen_stages >= 0 && opt.frozen_stages <= backbone->num_stages(),
               "ByolTrainer: frozen_stages must lie in [0, ", backbone->num_stages(), "] for this backbone, got ",
               opt.frozen_stages);
    Rng init(opt.seed + 0x9e3779b97f4a7c15ULL);
    online_ = std::make_shared<OnlineNetwork>(std::move(backbone), opt.hidden, opt.projection, init);
    target_ = std::make_shared<TargetNetwork>(make_target(), opt.hidden, opt.projection, init);
    online_->backbone->freeze_stages(opt.frozen_stages);
    target_->backbone->freeze_stages(opt.frozen_stages);
    online_->to(opt.device);
    target_->to(opt.device);
    sync_target();
    adam_ = std::make_unique<nn::Adam>(*online_, nn::Adam::Options{opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay});
    online_->train();
    target_->train();  // BYOL's target uses batch statistics too; it gets no gradients
    if (opt.freeze_backbone_bn) {
        online_->backbone->eval();
        target_->backbone->eval();
    }
}

void ByolTrainer::sync_target() {
    // target <- online (backbone + projector: the leading part of the online flat buffers)
    const int64_t np = target_->flat_params().numel(), nb = target_->flat_buffers().numel();
    FSAD_CHECK(online_->flat_params().numel() > np && online_->flat_buffers().numel() >= nb,
               "ByolTrainer: target and online architectures differ");
    target_->flat_params().copy_from(online_->flat_params().slice(0, np));
    target_->flat_buffers().copy_from(online_->flat_buffers().slice(0, nb));
}

const ByolTrainer::PackedShots& ByolTrainer::packed_shots(const std::vector<Tensor>& shots) {
    const bool same = packed_.packed.defined() && shots.size() == packed_.source.size() &&
                      std::equal(shots.begin(), shots.end(), packed_.source.begin(),
                                 [](const Tensor& a, const Tensor& b) { return a.same_storage(b) && a.data() == b.data() && a.shape() == b.shape(); });
    if (same) return packed_;
    packed_.packed = pack_images(shots, packed_.images, opt_.device);
    packed_.source = shots;
    return packed_;
}

ByolTrainer::Views ByolTrainer::prepare_views(const std::vector<Tensor>& shots) {
    FSAD_CHECK(!shots.empty(), "ByolTrainer::step: no training images");
    const int64_t B = opt_.batch;
    const std::vector<int64_t> idx = draw_batch(static_cast<int64_t>(shots.size()), B, rng_);
    // one seed per image and step: the views do not depend on the thread count
    std::vector<uint64_t> seeds(static_cast<size_t>(B));
    for (auto& s : seeds) s = rng_.engine()();
    const bool neg = opt_.negative != Negative::None && opt_.lambda_np > 0;
    AugmentOptions affine = opt_.augment;  // negatives start from an affine view of the shot
    affine.colour = false;
    Views v;
    if (views_on_device()) {
        // the draws on the host, in the order augment() makes them; the views by kernels
        std::vector<AugmentParams> p1(static_cast<size_t>(B)), p2(static_cast<size_t>(B)), pa(neg ? static_cast<size_t>(B) : 0);
        std::vector<NegativeParams> pn(pa.size());
        for (int64_t i = 0; i < B; ++i) {
            Rng r(seeds[static_cast<size_t>(i)]);
            const size_t k = static_cast<size_t>(i);
            const int64_t shot = idx[k];
            const Tensor& x = shots[static_cast<size_t>(shot)];
            imgproc::check_rgb(x, "augment");
            p1[k] = sample_augment(x.dim(1), x.dim(2), opt_.augment, r);
            p2[k] = sample_augment(x.dim(1), x.dim(2), opt_.augment, r);
            p1[k].crop.image = p2[k].crop.image = shot;
            if (neg) {
                pa[k] = sample_augment(x.dim(1), x.dim(2), affine, r);
                pa[k].crop.image = shot;
                pn[k] = sample_negative(pa[k].crop.out_h, pa[k].crop.out_w, opt_.negative, r);
            }
        }
        const PackedShots& ps = packed_shots(shots);
        v.x1 = ops::imagenet_normalize(augment_images(ps.packed, ps.images, p1));
        v.x2 = ops::imagenet_normalize(augment_images(ps.packed, ps.images, p2));
        if (neg) v.xn = ops::imagenet_normalize(negative_images(augment_images(ps.packed, ps.images, pa), pn));
    } else {
        std::vector<Tensor> v1(static_cast<size_t>(B)), v2(static_cast<size_t>(B)), vn(neg ? static_cast<size_t>(B) : 0);
#pragma omp parallel for schedule(dynamic)
        for (int64_t i = 0; i < B; ++i) {
            Rng r(seeds[static_cast<size_t>(i)]);
            const Tensor& x = shots[static_cast<size_t>(idx[static_cast<size_t>(i)])];
            v1[static_cast<size_t>(i)] = augment(x, opt_.augment, r);
            v2[static_cast<size_t>(i)] = augment(x, opt_.augment, r);
            if (neg) vn[static_cast<size_t>(i)] = negative(augment(x, affine, r), opt_.negative, r);
        }
        v.x1 = normalized_batch(v1);
        v.x2 = normalized_batch(v2);
        if (neg) v.xn = normalized_batch(vn);
    }
    v.perm.resize(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) v.perm[static_cast<size_t>(i)] = i;
    std::shuffle(v.perm.begin(), v.perm.end(), rng_.engine());
    return v;
}

StepStats ByolTrainer::run_views(const Views& v) {
    return train_step(v.x1, v.x2, v.xn.defined() ? &v.xn : nullptr, v.perm);  // (copied to the device there)
}

StepStats ByolTrainer::step(const std::vector<Tensor>& shots) { return run_views(prepare_views(shots)); }

StepStats ByolTrainer::train_step(const Tensor& x1_in, const Tensor& x2_in, const Tensor* xn_in,
                                  const std::vector<int64_t>& perm) {
    FSAD_CHECK(x1_in.ndim() == 4 && x1_in.shape() == x2_in.shape() && (!xn_in || xn_in->shape() == x1_in.shape()),
               "ByolTrainer::train_step: views must be [B,3,S,S] of the same shape");
    const Device dev = opt_.device;
    auto on_dev = [&](const Tensor& t) { return t.device() == dev ? t : t.to(dev); };
    const Tensor x1 = on_dev(x1_in), x2 = on_dev(x2_in);
    const Tensor xn_dev = xn_in ? on_dev(*xn_in) : Tensor();
    const Tensor* xn = xn_in ? &xn_dev : nullptr;
    const int64_t B = x1.dim(0);
    const bool neg = xn != nullptr && opt_.lambda_np > 0;
    std::optional<ops::PrecisionScope> precision;
    if (opt_.precision) precision.emplace(*opt_.precision);
    adam_->zero_grad();
    OnlineNetwork& on = *online_;
    Var f1 = on.backbone->forward(Var(x1));
    Var f2 = on.backbone->forward(Var(x2));
    Var fh1, fh2, zh1, zh2;
    {
        NoGradGuard ng;
        fh1 = target_->backbone->forward(Var(x1));
        fh2 = target_->backbone->forward(Var(x2));
        zh1 = target_->projector->forward(fh1);
        zh2 = target_->projector->forward(fh2);
    }
    StepStats st;
    st.step = step_;
    Var total;
    Tensor con, pair, negl;  // the losses' values, read once the backward pass is queued
    auto add = [&](const Var& l, float w) { total = total.defined() ? ag::add(total, ag::affine(l, w)) : ag::affine(l, w); };
    if (opt_.contrastive) {
        Var p1 = on.predictor->forward(on.projector->forward(f1));
        Var p2 = on.predictor->forward(on.projector->forward(f2));
        Var l = contrastive_loss(p1, zh2, p2, zh1);
        con = l.value();
        add(l, 1.0f);
    }
    if (opt_.pair == PairLoss::CrossInstance) {
        Var l = positive_pair_loss(f1, fh1, perm);
        pair = l.value();
        add(l, opt_.lambda_pp);
    } else if (opt_.pair == PairLoss::FixedCentre) {
        if (!centre_.defined()) centre_ = ops::affine(ops::sum_dim(f1.value(), 0), 1.0f / static_cast<float>(B), 0.0f);
        Var l = fixed_centre_loss(f1, centre_);
        pair = l.value();
        add(l, opt_.lambda_pp);
    }
    if (neg) {
        Var fn = on.backbone->forward(Var(*xn));
        Var l = negative_pair_loss(fh1, fn);
        negl = l.value();
        add(l, opt_.lambda_np);
    }
    FSAD_CHECK(total.defined(), "ByolTrainer: every loss is switched off (contrastive, pair and negative)");
    // The backward pass is queued before any value is read back: on a GPU every read waits for
    // the device, and reading the losses mid-forward (as before) left it idle at each one. A
    // diverged step is still refused before the optimiser changes any weight.
    total.backward();
    if (con.defined()) st.con = con.item();
    if (pair.defined()) st.pair = pair.item();
    if (negl.defined()) st.neg = negl.item();
    st.loss = total.value().item();
    auto finite = [](const Tensor& t) {
        for (float v : t.to_vector())
            if (!std::isfinite(v)) return false;
        return true;
    };
    if (!std::isfinite(st.loss) || !finite(f1.value()) || !finite(fh1.value()))
        throw Error("BYOL fine-tuning diverged at step " + std::to_string(step_) + ": loss " + std::to_string(st.loss) +
                    " or the backbone features are not finite; lower the learning rate (now " +
                    std::to_string(opt_.lr) + ") or check the input images");
    adam_->step();
    // EMA of parameters and BatchNorm statistics (the target's share of the online buffers)
    float beta = opt_.ema;
    if (opt_.ema_cosine && opt_.steps > 0)
        beta = 1.0f - (1.0f - opt_.ema) *
                          static_cast<float>((std::cos(std::numbers::pi * static_cast<double>(step_) /
                                                       static_cast<double>(opt_.steps)) + 1.0) / 2.0);
    target_->unprepare();  // (prepared inference weights would go stale)
    ops::ema_update(target_->flat_params(), online_->flat_params().slice(0, target_->flat_params().numel()), beta);
    ops::ema_update(target_->flat_buffers(), online_->flat_buffers().slice(0, target_->flat_buffers().numel()), beta);
    ++step_;
    return st;
}

void ByolTrainer::fit(const std::vector<Tensor>& shots, const std::function<void(const StepStats&)>& progress) {
    // With prefetching, the next step's views are drawn and augmented on a second thread while
    // this step runs; without, the same future is deferred and prepared on this thread when taken.
    // Either way only one thread at a time touches rng_ (run_views draws nothing), one step after
    // the other, so the draws come in the same order. A future of std::async joins its thread when
    // destroyed, also when a step or the progress callback throws.
    const bool prefetch = !views_on_device() && (opt_.prefetch == ByolOptions::Prefetch::On ||
                                                 (opt_.prefetch == ByolOptions::Prefetch::Auto && opt_.device.is_cuda()));
    const auto policy = prefetch ? std::launch::async : std::launch::deferred;
    const int threads = get_num_threads();  // OpenMP's thread count is per thread: carry it over
    auto prepare = [&] {
        set_num_threads(threads);
        return prepare_views(shots);
    };
    std::future<Views> next;
    if (step_ < opt_.steps) next = std::async(policy, prepare);
    while (step_ < opt_.steps) {
        const Views v = next.get();
        if (step_ + 1 < opt_.steps) next = std::async(policy, prepare);
        StepStats s = run_views(v);
        if (progress) progress(s);
    }
}

}  // namespace fsad::method
