#include "fsad/nn/backbones.hpp"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fsad/io/safetensors.hpp"

namespace fsad::nn {
namespace {

using Act = math::Activation;

int64_t scaled(int64_t c, float w) { return std::max<int64_t>(1, static_cast<int64_t>(std::lround(static_cast<double>(c) * w))); }

// torchvision: conv weights ~ N(0, sqrt(2 / fan_out)) (kaiming_normal_, mode="fan_out", relu).
std::shared_ptr<Conv2d> conv(int64_t in, int64_t out, int64_t k, int stride, int pad, int groups, Rng& rng) {
    auto c = std::make_shared<Conv2d>(Conv2d::Options{in, out, k, stride, pad, 1, groups, false}, rng);
    const float std = std::sqrt(2.0f / static_cast<float>(out * k * k));
    c->weight().value().copy_from(rng.normal_tensor(c->weight().shape(), 0.0f, std));
    return c;
}

// torchvision's Conv2dNormActivation: Sequential(conv, bn, act) -> keys 0.*, 1.*
std::shared_ptr<ConvBNAct> conv_bn_act(int64_t in, int64_t out, int64_t k, int stride, int groups, Act a, Rng& rng) {
    return std::make_shared<ConvBNAct>(conv(in, out, k, stride, static_cast<int>((k - 1) / 2), groups, rng),
                                       std::make_shared<BatchNorm2d>(out), a);
}

// ------------------------------------------------------------------ ResNet
class BasicBlock : public Module {
public:
    BasicBlock(int64_t in, int64_t planes, int stride, Rng& rng) {
        conv1_ = register_module("conv1", conv(in, planes, 3, stride, 1, 1, rng));
        bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
        conv2_ = register_module("conv2", conv(planes, planes, 3, 1, 1, 1, rng));
        bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
        if (stride != 1 || in != planes) {
            down_ = register_module("downsample", std::make_shared<Sequential>());
            down_->add(conv(in, planes, 1, stride, 0, 1, rng));
            down_->add(std::make_shared<BatchNorm2d>(planes));
        }
    }
    Var forward(const Var& x) override {
        Var h = bn1_->conv_forward_act(*conv1_, x, Act::ReLU);
        const Var shortcut = down_ ? down_->forward(x) : x;
        return bn2_->conv_forward_act(*conv2_, h, Act::ReLU, &shortcut);  // relu(bn2(conv2(h)) + shortcut)
    }

private:
    std::shared_ptr<Conv2d> conv1_, conv2_;
    std::shared_ptr<BatchNorm2d> bn1_, bn2_;
    std::shared_ptr<Sequential> down_;
};

// torchvision's ResNet v1.5: the stride sits on the 3x3 conv.
class Bottleneck : public Module {
public:
    static constexpr int64_t expansion = 4;
    Bottleneck(int64_t in, int64_t planes, int stride, Rng& rng) {
        conv1_ = register_module("conv1", conv(in, planes, 1, 1, 0, 1, rng));
        bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
        conv2_ = register_module("conv2", conv(planes, planes, 3, stride, 1, 1, rng));
        bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
        conv3_ = register_module("conv3", conv(planes, planes * 4, 1, 1, 0, 1, rng));
        bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(planes * 4));
        if (stride != 1 || in != planes * 4) {
            down_ = register_module("downsample", std::make_shared<Sequential>());
            down_->add(conv(in, planes * 4, 1, stride, 0, 1, rng));
            down_->add(std::make_shared<BatchNorm2d>(planes * 4));
        }
    }
    Var forward(const Var& x) override {
        Var h = bn1_->conv_forward_act(*conv1_, x, Act::ReLU);
        h = bn2_->conv_forward_act(*conv2_, h, Act::ReLU);
        const Var shortcut = down_ ? down_->forward(x) : x;
        return bn3_->conv_forward_act(*conv3_, h, Act::ReLU, &shortcut);  // relu(bn3(conv3(h)) + shortcut)
    }

private:
    std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
    std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
    std::shared_ptr<Sequential> down_;
};

class ResNet : public Backbone {
public:
    ResNet(const BackboneConfig& cfg, Rng& rng) {
        cfg_ = cfg;
        std::vector<int> blocks;
        bool bottleneck = false;
        switch (cfg.kind) {
            case BackboneKind::ResNet18: blocks = {2, 2, 2, 2}; break;
            case BackboneKind::ResNet34: blocks = {3, 4, 6, 3}; break;
            case BackboneKind::ResNet50: blocks = {3, 4, 6, 3}; bottleneck = true; break;
            case BackboneKind::ResNet101: blocks = {3, 4, 23, 3}; bottleneck = true; break;
            default: throw Error("ResNet: not a ResNet kind");
        }
        int64_t in = scaled(64, cfg.width);
        conv1_ = register_module("conv1", conv(3, in, 7, 2, 3, 1, rng));
        bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(in));
        for (int s = 0; s < 4; ++s) {
            auto layer = std::make_shared<Sequential>();
            int64_t planes = scaled(64 << s, cfg.width);
            for (int b = 0; b < blocks[static_cast<size_t>(s)]; ++b) {
                int stride = (b == 0 && s > 0) ? 2 : 1;
                if (bottleneck) {
                    layer->add(std::make_shared<Bottleneck>(in, planes, stride, rng));
                    in = planes * Bottleneck::expansion;
                } else {
                    layer->add(std::make_shared<BasicBlock>(in, planes, stride, rng));
                    in = planes;
                }
            }
            layers_.push_back(register_module("layer" + std::to_string(s + 1), layer));
        }
        dim_ = in;
    }
    Output forward_features(const Var& x, bool keep_stages) override {
        Output out;
        Var h = bn1_->conv_forward_act(*conv1_, x, Act::ReLU);
        h = ag::maxpool2d(h, ops::Pool2dParams{3, 3, 2, 2, 1, 1});
        for (auto& l : layers_) {
            h = l->forward(h);
            if (keep_stages) out.stages.push_back(h);
        }
        out.feature = ag::global_avgpool(h);
        return out;
    }
    std::vector<Var> forward_stages(const Var& x, int64_t last) override {
        FSAD_CHECK(last >= 0 && last < num_stages(), "ResNet::forward_stages: stage ", last, " out of range");
        std::vector<Var> out;
        Var h = bn1_->conv_forward_act(*conv1_, x, Act::ReLU);
        h = ag::maxpool2d(h, ops::Pool2dParams{3, 3, 2, 2, 1, 1});
        for (int64_t s = 0; s <= last; ++s) {
            h = layers_[static_cast<size_t>(s)]->forward(h);
            out.push_back(h);
        }
        return out;
    }
    std::vector<int64_t> patch_stages() const override { return {1, 2}; }
    int64_t feature_dim() const override { return dim_; }
    int64_t num_stages() const override { return static_cast<int64_t>(layers_.size()); }
    void freeze_stages(int64_t k) override {
        FSAD_CHECK(k >= 0 && k <= num_stages(), "ResNet::freeze_stages: k must lie in [0, ", num_stages(), "], got ", k);
        if (k == 0) return;
        conv1_->freeze();
        bn1_->freeze();
        for (int64_t s = 0; s < k; ++s) layers_[static_cast<size_t>(s)]->freeze();
    }

private:
    std::shared_ptr<Conv2d> conv1_;
    std::shared_ptr<BatchNorm2d> bn1_;
    std::vector<std::shared_ptr<Sequential>> layers_;
    int64_t dim_ = 0;
};

// ------------------------------------------------------------------ MobileNetV2
// torchvision's _make_divisible: round to a multiple of 8, never more than 10% down.
int64_t make_divisible(double v, int64_t d = 8) {
    int64_t n = std::max<int64_t>(d, static_cast<int64_t>(v + static_cast<double>(d) / 2.0) / d * d);
    if (static_cast<double>(n) < 0.9 * v) n += d;
    return n;
}

class InvertedResidual : public Module {
public:
    InvertedResidual(int64_t in, int64_t out, int stride, int t, bool force_expand, Act a, Rng& rng)
        : residual_(stride == 1 && in == out) {
        const int64_t hidden = static_cast<int64_t>(std::lround(static_cast<double>(in) * t));
        conv_ = register_module("conv", std::make_shared<Sequential>());
        if (t != 1 || force_expand) conv_->add(conv_bn_act(in, hidden, 1, 1, 1, a, rng));
        conv_->add(conv_bn_act(hidden, hidden, 3, stride, static_cast<int>(hidden), a, rng));
        conv_->add(conv(hidden, out, 1, 1, 0, 1, rng));
        conv_->add(std::make_shared<BatchNorm2d>(out));
    }
    Var forward(const Var& x) override {
        Var h = conv_->forward(x);
        return residual_ ? ag::add(x, h) : h;
    }

private:
    bool residual_;
    std::shared_ptr<Sequential> conv_;
};

class MobileNetV2 : public Backbone {
public:
    MobileNetV2(const BackboneConfig& cfg, Rng& rng) {
        cfg_ = cfg;
        features_ = register_module("features", std::make_shared<Sequential>());
        int64_t in = make_divisible(32 * cfg.width);
        const int64_t last = make_divisible(1280 * std::max(1.0f, cfg.width));
        features_->add(conv_bn_act(3, in, 3, 2, 1, cfg.activation, rng));
        bool first = true;
        // bounded well above torchvision's (t <= 6, c <= 320, n <= 4, s <= 2): a model file's metadata
        // must not make a network of unbounded size
        FSAD_CHECK(cfg.inverted_residual_setting.size() <= 32, "MobileNetV2: inverted_residual_setting has ",
                   cfg.inverted_residual_setting.size(), " rows, at most 32");
        for (const auto& row : cfg.inverted_residual_setting) {
            FSAD_CHECK(row.size() == 4 && row[0] >= 1 && row[0] <= 16 && row[1] >= 1 && row[1] <= 4096 && row[2] >= 1 &&
                           row[2] <= 64 && (row[3] == 1 || row[3] == 2),
                       "MobileNetV2: inverted_residual_setting rows must be [t, c, n, s] with t in [1, 16], c in "
                       "[1, 4096], n in [1, 64], s 1 or 2");
            const int64_t out = make_divisible(static_cast<double>(row[1]) * cfg.width);
            for (int i = 0; i < row[2]; ++i) {
                features_->add(std::make_shared<InvertedResidual>(in, out, i == 0 ? row[3] : 1, row[0],
                                                                  first && cfg.first_block_expand, cfg.activation, rng));
                first = false;
                in = out;
            }
            stage_ends_.push_back(features_->size() - 1);
        }
        features_->add(conv_bn_act(in, last, 1, 1, 1, cfg.activation, rng));
        dim_ = last;
    }
    Output forward_features(const Var& x, bool keep_stages) override {
        Output out;
        Var h = x;
        size_t next = 0;
        for (size_t i = 0; i < features_->size(); ++i) {
            h = (*features_)[i].forward(h);
            if (keep_stages && next < stage_ends_.size() && stage_ends_[next] == i) {
                out.stages.push_back(h);
                ++next;
            }
        }
        if (keep_stages) out.stages.push_back(h);
        out.feature = ag::global_avgpool(h);
        return out;
    }
    std::vector<Var> forward_stages(const Var& x, int64_t last) override {
        FSAD_CHECK(last >= 0 && last < num_stages(), "MobileNetV2::forward_stages: stage ", last, " out of range");
        std::vector<Var> out;
        Var h = x;
        const size_t end = last < num_stages() - 1 ? stage_ends_[static_cast<size_t>(last)] : features_->size() - 1;
        size_t next = 0;
        for (size_t i = 0; i <= end; ++i) {
            h = (*features_)[i].forward(h);
            if ((next < stage_ends_.size() && stage_ends_[next] == i) || i == features_->size() - 1) {
                out.push_back(h);
                ++next;
            }
        }
        return out;
    }
    std::vector<int64_t> patch_stages() const override {
        // torchvision's rows: 16, 24, 32 (stride 8), 64, 96 (stride 16), 160, 320 channels
        FSAD_CHECK(num_stages() >= 6, "MobileNetV2: patch features need the standard 7 stages");
        return {2, 4};
    }
    int64_t feature_dim() const override { return dim_; }
    int64_t num_stages() const override { return static_cast<int64_t>(stage_ends_.size()) + 1; }
    void freeze_stages(int64_t k) override {
        FSAD_CHECK(k >= 0 && k <= num_stages(), "MobileNetV2::freeze_stages: k must lie in [0, ", num_stages(), "], got ", k);
        if (k == 0) return;
        // the stem (features.0) goes with the first stage; the last stage is the final 1x1 conv
        const size_t end = k < num_stages() ? stage_ends_[static_cast<size_t>(k - 1)] + 1 : features_->size();
        for (size_t i = 0; i < end; ++i) (*features_)[i].freeze();
    }

private:
    std::shared_ptr<Sequential> features_;
    std::vector<size_t> stage_ends_;
    int64_t dim_ = 0;
};

bool ignorable_key(const std::string& k) {
    auto ends_with = [&](const std::string& s) { return k.size() >= s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0; };
    return ends_with("num_batches_tracked") || k.rfind("fc.", 0) == 0 || k.rfind("classifier.", 0) == 0;
}

}  // namespace

BackboneKind parse_backbone_kind(const std::string& s) {
    if (s == "resnet18") return BackboneKind::ResNet18;
    if (s == "resnet34") return BackboneKind::ResNet34;
    if (s == "resnet50") return BackboneKind::ResNet50;
    if (s == "resnet101") return BackboneKind::ResNet101;
    if (s == "mobilenetv2" || s == "mobilenet_v2") return BackboneKind::MobileNetV2;
    throw Error("unknown backbone '" + s + "' (expected resnet18, resnet34, resnet50, resnet101 or mobilenetv2)");
}

std::string to_string(BackboneKind k) {
    switch (k) {
        case BackboneKind::ResNet18: return "resnet18";
        case BackboneKind::ResNet34: return "resnet34";
        case BackboneKind::ResNet50: return "resnet50";
        case BackboneKind::ResNet101: return "resnet101";
        case BackboneKind::MobileNetV2: return "mobilenetv2";
    }
    return "?";
}

void BackboneConfig::apply_metadata(const std::map<std::string, std::string>& meta) {
    if (auto it = meta.find("first_block_expand"); it != meta.end()) {
        FSAD_CHECK(it->second == "true" || it->second == "false",
                   "metadata first_block_expand must be \"true\" or \"false\", got '", it->second, "'");
        first_block_expand = it->second == "true";
    }
    if (auto it = meta.find("activation"); it != meta.end()) {
        if (it->second == "relu") activation = math::Activation::ReLU;
        else if (it->second == "relu6") activation = math::Activation::ReLU6;
        else throw Error("metadata activation must be \"relu\" or \"relu6\", got '" + it->second + "'");
    }
    if (auto it = meta.find("inverted_residual_setting"); it != meta.end()) {
        try {
            auto j = nlohmann::json::parse(it->second);
            inverted_residual_setting = j.get<std::vector<std::vector<int>>>();
        } catch (const nlohmann::json::exception& e) {
            throw Error("metadata inverted_residual_setting is not a list of [t, c, n, s] rows: " +
                        std::string(e.what()));
        }
    }
}

std::shared_ptr<Backbone> make_backbone(const BackboneConfig& cfg, uint64_t seed) {
    FSAD_CHECK(cfg.width > 0.0f && cfg.width <= 4.0f, "make_backbone: width multiplier ", cfg.width,
               " outside (0, 4]");
    Rng rng(seed);
    std::shared_ptr<Backbone> b;
    if (cfg.kind == BackboneKind::MobileNetV2) b = std::make_shared<MobileNetV2>(cfg, rng);
    else b = std::make_shared<ResNet>(cfg, rng);
    b->flatten();
    return b;
}

std::shared_ptr<Backbone> load_backbone(BackboneConfig cfg, const std::string& path, bool strict) {
    io::SafeTensors st = io::read_safetensors(path);
    if (cfg.kind == BackboneKind::MobileNetV2) {
        try {
            cfg.apply_metadata(st.metadata);
        } catch (const Error& e) {
            throw FormatError(path + ": " + e.what());
        }
    }
    auto b = make_backbone(cfg);
    std::map<std::string, Tensor> sd;
    for (auto& [k, t] : st.tensors)
        if (!ignorable_key(k)) sd[k] = t;
    for (auto& [k, t] : sd) {
        const std::string& dt = st.dtypes[k];
        if (dt != "F32" && dt != "F16" && dt != "BF16" && dt != "F64")
            throw FormatError(path + ": tensor '" + k + "' has integer dtype " + dt + ", expected floating point");
    }
    try {
        b->load_state_dict(sd, strict);
    } catch (const Error& e) {
        throw FormatError(path + " (" + to_string(cfg.kind) + "): " + e.what());
    }
    return b;
}

}  // namespace fsad::nn

namespace fsad::nn {

std::vector<std::string> weight_search_paths(BackboneKind kind) {
    namespace fs = std::filesystem;
    const std::string name = to_string(kind) + ".safetensors";
    std::vector<std::string> out;
    if (const char* e = std::getenv("FSAD_WEIGHTS"); e && *e) {
        std::error_code ec;
        out.push_back(fs::is_directory(e, ec) ? (fs::path(e) / name).string() : std::string(e));
    }
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
        out.push_back((fs::path(x) / "fsad" / "weights" / name).string());
    else if (const char* h = std::getenv("HOME"); h && *h)
        out.push_back((fs::path(h) / ".cache" / "fsad" / "weights" / name).string());
    return out;
}

std::string find_weights(BackboneKind kind) {
    std::error_code ec;
    for (const auto& p : weight_search_paths(kind))
        if (std::filesystem::is_regular_file(p, ec)) return p;
    return "";
}

}  // namespace fsad::nn
