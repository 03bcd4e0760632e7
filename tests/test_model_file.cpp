// Hostile model files (regressions of tests/fuzz/fuzz_model): files with a valid checksum whose
// configuration or architecture asks for unbounded work are refused on load, naming the file;
// an error while scoring leaves the parallel loop as an exception.
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

#include "fsad/detail/parallel_for.hpp"
#include "helpers.hpp"

using namespace fsad;

namespace {

std::string tmp(const std::string& n) { return (std::filesystem::temp_directory_path() / ("fsad_model_file_" + n)).string(); }

// The model file's checksum as another writer would compute it (the format of detector.cpp):
// FNV-1a over the signed metadata, then each tensor's name, shape and float32 values.
uint64_t fnv1a(const std::map<std::string, Tensor>& tensors, const std::string& meta) {
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&](const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
    };
    mix(meta.data(), meta.size());
    for (const auto& [k, v] : tensors) {
        mix(k.data(), k.size());
        for (int64_t d : v.shape().vec()) mix(&d, sizeof d);
        std::vector<float> x = v.to_vector();
        mix(x.data(), x.size() * sizeof(float));
    }
    return h;
}

// A tiny fitted model (ResNet-18 at width 0.02, 32 px), saved at `path`.
void save_tiny(const std::string& path, Scorer scorer, nn::BackboneKind kind = nn::BackboneKind::ResNet18) {
    DetectorConfig cfg;
    cfg.backbone = kind;
    cfg.width = 0.02f;
    cfg.resolution = 32;
    cfg.scorer = scorer;
    cfg.patch.max_bank = 64;
    Detector d(cfg);
    d.fit({test::texture(1, false, 32, 40), test::texture(2, false, 32, 40), test::texture(3, false, 32, 40)});
    d.save(path);
}

// Rewrites the file's metadata with edit() (and its tensors with edit_tensors()), then signs it
// again: a file that passes the checksum.
template <class Edit, class EditTensors>
void resign(const std::string& path, Edit edit, EditTensors edit_tensors) {
    io::SafeTensors st = io::read_safetensors(path);
    edit(st.metadata);
    edit_tensors(st.tensors);
    auto& m = st.metadata;
    m["checksum"] = std::to_string(fnv1a(st.tensors, m["format"] + m["version"] + m["config"] + m["threshold"] +
                                                         m["first_block_expand"] + m["inverted_residual_setting"] +
                                                         m["activation"]));
    io::write_safetensors(path, st.tensors, st.metadata);
}
template <class Edit>
void resign(const std::string& path, Edit edit) {
    resign(path, edit, [](auto&) {});
}

void replace(std::string& s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, from);
    s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("model file: a configuration asking for unbounded work is refused, naming the file") {
    const std::string base = tmp("base.fsad");
    save_tiny(base, Scorer::PatchGauss);
    REQUIRE_NOTHROW(resign(base, [](auto&) {}));  // re-signing alone keeps the file valid
    REQUIRE(Detector::load(base).score(test::texture(4, false, 32, 40)) > 0);
    const std::string view = "\"view_h\":32,\"view_w\":48";  // 32 x 40 shots: the long side rounded to 16
    // each found by the fuzzer (the checksum skipped): allocations of 10 TB (resolution), 64 GB
    // (the map's blur), a minute of scoring (view), an exception thrown out of an OpenMP loop
    // (a negative view side: std::terminate)
    const std::pair<std::string, std::string> edits[] = {
        {"\"resolution\":32", "\"resolution\":1000000"},
        {"\"map_sigma\":4.0", "\"map_sigma\":1000000000.0"},
        {view, "\"view_h\":100000,\"view_w\":48"},
        {view, "\"view_h\":32,\"view_w\":-7"},
        {view, "\"view_h\":0,\"view_w\":48"},
        {"\"max_aspect\":8.0", "\"max_aspect\":1e300"},
        {"\"tiles\":0", "\"tiles\":50"},
        {"\"tiles\":0", "\"tiles\":-1000000"},
        {"\"tile_overlap\":0.25", "\"tile_overlap\":7.0"},
    };
    for (const auto& [from, to] : edits) {
        CAPTURE(to);
        const std::string p = tmp("edited.fsad");
        std::filesystem::copy_file(base, p, std::filesystem::copy_options::overwrite_existing);
        resign(p, [&](auto& m) { replace(m["config"], from, to); });
        CHECK_THROWS_WITH_AS(Detector::load(p), doctest::Contains((p + ": Detector: ").c_str()), FormatError);
    }
    // resize_short with the squash view (the global scorer's file)
    const std::string g = tmp("global.fsad");
    save_tiny(g, Scorer::Global);
    resign(g, [&](auto& m) {
        replace(m["config"], "\"resize_short\":0", "\"resize_short\":100000");
        replace(m["config"], "\"view\":\"shots\"", "\"view\":\"squash\"");
    });
    CHECK_THROWS_WITH_AS(Detector::load(g), doctest::Contains("resize_short must be 0 or lie in [resolution, 8192]"),
                         FormatError);
}

TEST_CASE("model file: a patch-sum file missing a part or with bad divisors is refused, naming the tensor") {
    const std::string base = tmp("sum.fsad");
    save_tiny(base, Scorer::PatchSum);
    REQUIRE(Detector::load(base).patch_scale()[0] > 0);
    auto scale = [](float a, float b, int64_t n = 2) {
        Tensor t = Tensor::zeros(Shape{n});
        t.data()[0] = a;
        if (n > 1) t.data()[1] = b;
        return t;
    };
    const std::pair<std::function<void(std::map<std::string, Tensor>&)>, std::string> edits[] = {
        {[](auto& t) { t.erase("patch.bank"); }, "tensor 'patch.bank' missing"},
        {[](auto& t) { t.erase("patch.scale"); }, "tensor 'patch.scale' missing"},
        {[](auto& t) { t.erase("patch.mean"); }, "tensor 'patch.mean' missing"},
        {[&](auto& t) { t["patch.scale"] = scale(-1, 1); }, "'patch.scale' must hold two positive finite divisors"},
        {[&](auto& t) { t["patch.scale"] = scale(1, std::nanf("")); }, "'patch.scale' must hold two positive finite divisors"},
        {[&](auto& t) { t["patch.scale"] = scale(1, 1, 1); }, "'patch.scale' must hold two positive finite divisors"},
        {[&](auto& t) {
             const Tensor& b = t["patch.bank"];
             t["patch.bank"] = Tensor::zeros(Shape{b.dim(0), b.dim(1) + 1});
         },
         "the patch Gaussian and the memory bank differ in feature size"},
    };
    for (const auto& [edit, message] : edits) {
        CAPTURE(message);
        const std::string p = tmp("sum_edited.fsad");
        std::filesystem::copy_file(base, p, std::filesystem::copy_options::overwrite_existing);
        resign(p, [](auto&) {}, edit);
        CHECK_THROWS_WITH_AS(Detector::load(p), doctest::Contains((p + ": ").c_str()), FormatError);
        CHECK_THROWS_WITH_AS(Detector::load(p), doctest::Contains(message.c_str()), FormatError);
    }
}

TEST_CASE("model file: a MobileNetV2 architecture beyond bounds is refused, naming the file") {
    const std::string p = tmp("mnv2.fsad");
    save_tiny(p, Scorer::Global, nn::BackboneKind::MobileNetV2);
    REQUIRE_NOTHROW(Detector::load(p));
    for (const char* irs : {"[[6,1000000,1,1]]", "[[1,16,100000,1]]", "[[1,16,1,7]]", "[[100,16,1,1]]"}) {
        CAPTURE(irs);
        resign(p, [&](auto& m) { m["inverted_residual_setting"] = irs; });
        CHECK_THROWS_WITH_AS(Detector::load(p), doctest::Contains((p + ": MobileNetV2: inverted_residual_setting").c_str()),
                             FormatError);
    }
}

TEST_CASE("parallel_for_each: a body's exception leaves the loop and is rethrown") {
    std::vector<int> done(64, 0);
    CHECK_THROWS_WITH_AS(parallel_for_each(64,
                                           [&](int64_t i) {
                                               if (i == 17) throw Error("item 17 failed");
                                               done[static_cast<size_t>(i)] = 1;
                                           }),
                         "item 17 failed", Error);
    CHECK(done[17] == 0);
    std::vector<int64_t> sq(100);
    parallel_for_each(100, [&](int64_t i) { sq[static_cast<size_t>(i)] = i * i; });
    for (int64_t i = 0; i < 100; ++i) CHECK(sq[static_cast<size_t>(i)] == i * i);
}
