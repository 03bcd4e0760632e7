#include "config_json.hpp"

namespace fsad {

namespace method {
PairLoss parse_pair_loss(const std::string& s) {
    if (s == "none") return PairLoss::None;
    if (s == "cross-instance") return PairLoss::CrossInstance;
    if (s == "fixed-centre") return PairLoss::FixedCentre;
    throw Error("unknown pair loss '" + s + "' (none | cross-instance | fixed-centre)");
}
std::string to_string(PairLoss p) {
    return p == PairLoss::CrossInstance ? "cross-instance" : p == PairLoss::FixedCentre ? "fixed-centre" : "none";
}
Shrinkage parse_shrinkage(const std::string& s) {
    if (s == "ledoit-wolf") return Shrinkage::LedoitWolf;
    if (s == "ridge") return Shrinkage::Ridge;
    throw Error("unknown shrinkage '" + s + "' (ledoit-wolf | ridge)");
}
std::string to_string(Shrinkage s) { return s == Shrinkage::Ridge ? "ridge" : "ledoit-wolf"; }
}  // namespace method

namespace {

using json = nlohmann::json;

// Keys every model file has held since version 1 (the "patch" ones whenever "patch" is there): a
// configuration without one was not written by fsad. Frozen: keys added later take their defaults.
const char* const kVersion1Keys[] = {
    "/backbone", "/width", "/weights", "/adapt", "/resolution", "/resize_short", "/n_augment",
    "/threshold_quantile", "/seed", "/density/shrinkage", "/density/ridge", "/density/l2_normalize",
    "/byol/steps", "/byol/batch", "/byol/lr", "/byol/beta1", "/byol/beta2", "/byol/ema", "/byol/ema_cosine",
    "/byol/contrastive", "/byol/pair", "/byol/lambda_pp", "/byol/negative", "/byol/lambda_np", "/byol/hidden",
    "/byol/projection"};
const char* const kPatchKeys[] = {"/patch/map_sigma", "/patch/coreset", "/patch/max_bank"};

void require(const json& j, const char* key) {
    if (!j.contains(json::json_pointer(key)))
        throw json::out_of_range::create(403, std::string("key '") + (key + 1) + "' not found", &j);
}

// The configuration of a JSON object, as the model file stores it (older files included: the
// keys of version 1 must be there, later keys take their defaults, and the three choices whose
// defaults changed since version 1 take that version's value). Throws json::exception naming the key.
DetectorConfig read_config(json j) {
    for (const char* k : kVersion1Keys) require(j, k);
    if (j.contains("patch"))
        for (const char* k : kPatchKeys) require(j, k);
    // files before the patch scorers (version 1) and before the mirrored shots were fitted with
    // these, where today's defaults are auto, shots and auto
    for (const auto& [key, then] : {std::pair{"scorer", "global"}, {"view", "squash"}, {"flips", "off"}})
        j.emplace(key, then);  // only where the key is missing
    return j.get<DetectorConfig>();
}

}  // namespace

std::string to_json(const DetectorConfig& cfg) { return json(cfg).dump(); }

DetectorConfig detector_config_from_json(const std::string& text) {
    try {
        return read_config(json::parse(text));
    } catch (const json::exception& e) {
        throw FormatError(std::string("detector configuration: ") + e.what());
    }
}

}  // namespace fsad
