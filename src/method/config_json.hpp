// The detector's configuration as JSON (the model file's "config" and the C API's configuration):
// each struct's stored fields are listed once, in the nlohmann macro next to its name below, and
// read with the default object's value for every key a file lacks (older files load). Enums are
// stored by their names. Adding a stored option means adding its field to the struct and to the
// macro; nothing else in the file format changes. Private to the library: the public headers do
// not depend on nlohmann.
#pragma once
// errors name the key as a JSON pointer ("(/byol/lr) type must be number, but is string"); the
// nlohmann types are tagged by this setting, so other files include json.hpp without it.
// (GCC 12 warns, wrongly, about array bounds in this mode's code: CMakeLists.txt silences it for
// config_json.cpp, the one file that includes this header.)
#ifndef JSON_DIAGNOSTICS
#define JSON_DIAGNOSTICS 1
#endif
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "fsad/method/detector.hpp"

/// Stores the enum E by the name `name(e)`; reads it with `parse(name)`, whose fsad::Error (an
/// unknown name, listing the known ones) becomes a JSON error naming the key. Unlike
/// NLOHMANN_JSON_SERIALIZE_ENUM, which reads an unknown name as the first enumerator, a typo in a
/// configuration is refused rather than quietly meaning something else. Use in E's namespace.
#define FSAD_JSON_ENUM(E, parse, name)                                                      \
    inline void to_json(nlohmann::json& j, const E& e) { j = name(e); }                     \
    inline void from_json(const nlohmann::json& j, E& e) {                                   \
        try {                                                                                \
            e = parse(j.get<std::string>());                                                 \
        } catch (const ::fsad::Error& x) {                                                   \
            throw nlohmann::json::type_error::create(302, x.what(), &j);                     \
        }                                                                                    \
    }

NLOHMANN_JSON_NAMESPACE_BEGIN
/// std::optional as the value or null (nlohmann 3.11 has no serialiser of its own for it).
template <class T>
struct adl_serializer<std::optional<T>> {
    static void to_json(json& j, const std::optional<T>& o) { j = o ? json(*o) : json(nullptr); }
    static void from_json(const json& j, std::optional<T>& o) {
        if (j.is_null()) o.reset();
        else o = j.get<T>();
    }
};
NLOHMANN_JSON_NAMESPACE_END

namespace fsad {
namespace ops {
FSAD_JSON_ENUM(Precision, parse_precision, precision_name)
}
namespace nn {
FSAD_JSON_ENUM(BackboneKind, parse_backbone_kind, to_string)
}
namespace method {
// the names of the two enums that have no parser elsewhere (only the model file reads them)
PairLoss parse_pair_loss(const std::string& s);  ///< none | cross-instance | fixed-centre
std::string to_string(PairLoss p);
Shrinkage parse_shrinkage(const std::string& s);  ///< ledoit-wolf | ridge
std::string to_string(Shrinkage s);

FSAD_JSON_ENUM(Negative, parse_negative, to_string)
FSAD_JSON_ENUM(PairLoss, parse_pair_loss, to_string)
FSAD_JSON_ENUM(Shrinkage, parse_shrinkage, to_string)

// Not stored (loading a model never needed them): eps, weight_decay, augment, seed (the
// detector's seed is), device, augment_on_device, prefetch.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ByolOptions, steps, batch, lr, beta1, beta2, ema, ema_cosine,
                                                contrastive, pair, lambda_pp, negative, lambda_np, hidden, projection,
                                                freeze_backbone_bn, frozen_stages, precision)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(GaussianOptions, shrinkage, ridge, l2_normalize)
}  // namespace method

FSAD_JSON_ENUM(Scorer, parse_scorer, to_string)
FSAD_JSON_ENUM(View, parse_view, to_string)
FSAD_JSON_ENUM(Flips, parse_flips, to_string)

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PatchConfig, map_sigma, coreset, max_bank, stages, flip_ratio,
                                                fallback_auroc, tile_overlap, second_view)
// Not stored: threads and device (where a model runs is the loader's choice).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DetectorConfig, backbone, width, weights, adapt, resolution,
                                                resize_short, n_augment, scorer, view, max_aspect, auto_global,
                                                flips, view_h, view_w, tiles, patch, density, threshold_quantile,
                                                spread_prior, spread_prior_weight, seed, byol)

}  // namespace fsad
