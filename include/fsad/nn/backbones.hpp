// Backbones with torchvision's architectures and state-dict key names: ResNet18/34 (basic
// blocks), ResNet50/101 (bottlenecks) and MobileNetV2, each with a width multiplier for fast
// tests. forward_features returns the globally pooled feature and, on request, the feature map
// at the end of every stage.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "fsad/nn/layers.hpp"

namespace fsad::nn {

enum class BackboneKind { ResNet18, ResNet34, ResNet50, ResNet101, MobileNetV2 };
BackboneKind parse_backbone_kind(const std::string& s);
std::string to_string(BackboneKind k);

struct BackboneConfig {
    BackboneKind kind = BackboneKind::ResNet18;
    float width = 1.0f;  ///< channel multiplier (1.0 = the published network)
    // MobileNetV2 variations (torchvision's defaults unless a checkpoint's metadata says otherwise)
    bool first_block_expand = false;  ///< block 1 gets a 1x1 expansion conv although t = 1
    std::vector<std::vector<int>> inverted_residual_setting = {
        {1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    math::Activation activation = math::Activation::ReLU6;  ///< MobileNetV2's; ResNets always use ReLU

    /// Applies a safetensors file's __metadata__ (first_block_expand, inverted_residual_setting,
    /// activation) as ../shared/weights/README.md describes. Unknown keys are ignored.
    void apply_metadata(const std::map<std::string, std::string>& meta);
};

class Backbone : public Module {
public:
    struct Output {
        Var feature;               ///< [N, feature_dim], global average pool of the last stage
        std::vector<Var> stages;   ///< end-of-stage maps when requested
    };
    virtual Output forward_features(const Var& x, bool keep_stages = false) = 0;
    Var forward(const Var& x) override { return forward_features(x).feature; }
    /// The maps at the end of stages 0..last (forward_features' list), stopping there: the
    /// later stages are not run. requires 0 <= last < num_stages().
    virtual std::vector<Var> forward_stages(const Var& x, int64_t last) = 0;
    /// The two stages whose maps make patch features (method/patch.hpp): strides 8 and 16 of
    /// the input (ResNet: layer2, layer3; MobileNetV2: the 32- and 96-channel stages).
    virtual std::vector<int64_t> patch_stages() const = 0;
    virtual int64_t feature_dim() const = 0;
    /// The stages of forward_features' list (ResNet: layer1..layer4; MobileNetV2: one per row of
    /// inverted_residual_setting, then the final 1x1 convolution).
    virtual int64_t num_stages() const = 0;
    /// Freezes (Module::freeze) the stem and the first k stages: fine-tuning then adapts only
    /// the later ones. k = 0 freezes nothing, k = num_stages() everything.
    virtual void freeze_stages(int64_t k) = 0;
    const BackboneConfig& config() const { return cfg_; }

protected:
    BackboneConfig cfg_;
};

/// Builds a backbone with torchvision's random initialisation, flattened (one parameter buffer).
std::shared_ptr<Backbone> make_backbone(const BackboneConfig& cfg, uint64_t seed = 0);

/// Builds a backbone from a safetensors checkpoint with torchvision key names. The file's
/// metadata adjusts the architecture (MobileNetV2 variants); every parameter and buffer must be
/// present with the right shape. Keys a feature extractor does not use (the classifier: fc.*,
/// classifier.*; BatchNorm's num_batches_tracked counters) are accepted and ignored; any other
/// unexpected key is an error unless `strict` is false.
std::shared_ptr<Backbone> load_backbone(BackboneConfig cfg, const std::string& path, bool strict = true);

/// Where fsad looks for ImageNet weights of `kind` when none are named: $FSAD_WEIGHTS (a file,
/// or a folder holding <name>.safetensors), then $XDG_CACHE_HOME/fsad/weights/<name>.safetensors
/// (~/.cache when XDG_CACHE_HOME is unset), where <name> is resnet18, ..., mobilenetv2.
/// Returns the candidate paths in that order.
std::vector<std::string> weight_search_paths(BackboneKind kind);
/// The first existing file of weight_search_paths, or "" when there is none.
std::string find_weights(BackboneKind kind);

}  // namespace fsad::nn
