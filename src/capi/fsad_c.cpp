// The C ABI (include/fsad/fsad.h) over fsad::Detector. Every entry point is a try/catch that turns
// fsad's exceptions into a status and the calling thread's last-error message; nothing C++ leaks.
// Locking: a handle holds a shared mutex; scoring and reads share it (Detector's scoring is
// const and thread-safe), fit and set_threshold take it exclusively.
#include "fsad/fsad.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "fsad/core/ops.hpp"
#include "fsad/core/parallel.hpp"
#include "fsad/io/image.hpp"
#include "fsad/method/detector.hpp"
#include "fsad/nn/backbones.hpp"

#ifndef FSAD_VERSION_STRING
#define FSAD_VERSION_STRING "unknown"
#endif

struct fsad_detector {
    fsad::DetectorConfig cfg;                  // what fit builds a fresh detector from
    std::optional<fsad::ops::Precision> precision;  // features and scores; none = process-wide
    std::optional<fsad::Detector> det;         // set by fit or load
    bool loaded = false;                       // from a model file: not refitted (no checkpoint to start from)
    mutable std::shared_mutex mu;
};

namespace {

using json = nlohmann::json;
thread_local std::string g_last_error;

struct ArgumentError : fsad::Error {
    using fsad::Error::Error;
};
struct StateError : fsad::Error {
    using fsad::Error::Error;
};
struct Cancelled : fsad::Error {
    Cancelled() : fsad::Error("fit: cancelled by the progress callback") {}
};

fsad_status fail(fsad_status s, const std::string& msg) {
    g_last_error = msg;
    return s;
}

// Runs f, mapping every exception to a status and a message prefixed with the entry point's name.
template <class F>
fsad_status guarded(const char* fn, F&& f) noexcept {
    try {
        g_last_error.clear();
        f();
        return FSAD_OK;
    } catch (const ArgumentError& e) {
        return fail(FSAD_ERR_ARGUMENT, std::string(fn) + ": " + e.what());
    } catch (const StateError& e) {
        return fail(FSAD_ERR_STATE, std::string(fn) + ": " + e.what());
    } catch (const Cancelled& e) {
        return fail(FSAD_ERR_CANCELLED, std::string(fn) + ": " + e.what());
    } catch (const fsad::FormatError& e) {
        return fail(FSAD_ERR_FORMAT, std::string(fn) + ": " + e.what());
    } catch (const fsad::IOError& e) {
        return fail(FSAD_ERR_IO, std::string(fn) + ": " + e.what());
    } catch (const fsad::CudaError& e) {
        return fail(FSAD_ERR_DEVICE, std::string(fn) + ": " + e.what());
    } catch (const fsad::Error& e) {  // the library's checks: arguments and configurations
        return fail(FSAD_ERR_ARGUMENT, std::string(fn) + ": " + e.what());
    } catch (const std::bad_alloc&) {
        return fail(FSAD_ERR_OUT_OF_MEMORY, std::string(fn) + ": out of memory");
    } catch (const std::exception& e) {
        return fail(FSAD_ERR_INTERNAL, std::string(fn) + ": " + e.what());
    } catch (...) {
        return fail(FSAD_ERR_INTERNAL, std::string(fn) + ": unknown exception");
    }
}

void need(bool cond, const std::string& msg) {
    if (!cond) throw ArgumentError(msg);
}

fsad::Device device_of(const std::string& s) {
    const fsad::Device dev = fsad::parse_device(s);
    if (dev.is_cuda() && !fsad::cuda_built())
        throw fsad::CudaError("device '" + s + "': this build of fsad has no CUDA backend");
    if (dev.is_cuda() && dev.index >= fsad::cuda_device_count())
        throw fsad::CudaError("device '" + s + "': no such GPU (" + std::to_string(fsad::cuda_device_count()) +
                              " visible)");
    return dev;
}

const char* json_kind(const json& v) {
    if (v.is_boolean()) return "a boolean";
    if (v.is_number_integer()) return "an integer";
    if (v.is_number()) return "a number";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "an array";
    if (v.is_object()) return "an object";
    return "null";
}

// Keys of `user` that `defaults` lacks (an unknown key is a typo, not a no-op) and values of
// another kind than the default's, named by their "a.b" path.
void check_keys(const json& user, const json& defaults, const std::string& prefix, std::vector<std::string>& unknown) {
    for (auto it = user.begin(); it != user.end(); ++it) {
        const std::string key = prefix + it.key();
        if (!defaults.contains(it.key())) {
            unknown.push_back(key);
            continue;
        }
        const json& u = it.value();
        const json& d = defaults.at(it.key());
        if (d.is_object()) {
            need(u.is_object(), "\"" + key + "\" must be an object, got " + u.dump());
            check_keys(u, d, key + ".", unknown);
        } else if (d.is_null()) {  // optional strings (byol.precision)
            need(u.is_null() || u.is_string(), "\"" + key + "\" must be a string or null, got " + u.dump());
        } else {
            const bool ok = d.is_number_integer() ? u.is_number_integer()
                            : d.is_number()       ? u.is_number()
                            : d.is_array()        ? u.is_array()
                                                  : std::string(json_kind(d)) == json_kind(u);
            need(ok, "\"" + key + "\" must be " + json_kind(d) + ", got " + u.dump());
        }
    }
}

// One image of the caller's memory as the detector's [3,H,W] float RGB in [0,1], read once.
fsad::Tensor to_tensor(const fsad_image& im, size_t index) {
    const std::string who = "image " + std::to_string(index) + ": ";
    need(im.data != nullptr, who + "data is NULL");
    need(im.width > 0 && im.height > 0,
         who + "width and height must be positive, got " + std::to_string(im.width) + " x " + std::to_string(im.height));
    need(im.channels == 1 || im.channels == 3 || im.channels == 4,
         who + "channels must be 1, 3 or 4, got " + std::to_string(im.channels));
    size_t px;
    switch (im.pixel_type) {
        case FSAD_PIXEL_U8: px = 1; break;
        case FSAD_PIXEL_U16: px = 2; break;
        case FSAD_PIXEL_F32: px = 4; break;
        default: throw ArgumentError(who + "pixel_type must be FSAD_PIXEL_U8, _U16 or _F32, got " + std::to_string(im.pixel_type));
    }
    const int64_t H = im.height, W = im.width, C = im.channels;
    const int64_t row = W * C * static_cast<int64_t>(px);
    const int64_t stride = im.row_stride == 0 ? row : im.row_stride;
    need(stride >= row, who + "row_stride " + std::to_string(im.row_stride) + " is smaller than a row (" +
                            std::to_string(row) + " bytes)");
    need(im.pixel_type == FSAD_PIXEL_U8 || stride % static_cast<int64_t>(px) == 0,
         who + "row_stride must be a multiple of the pixel size");
    fsad::Tensor t = fsad::Tensor::empty(fsad::Shape{3, H, W});
    float* out = t.data();
    const auto* base = static_cast<const unsigned char*>(im.data);
    const int64_t plane = H * W;
    for (int64_t y = 0; y < H; ++y) {
        const unsigned char* r = base + y * stride;
        for (int64_t x = 0; x < W; ++x) {
            float v[3];
            for (int64_t c = 0; c < std::min<int64_t>(C, 3); ++c) {
                const int64_t k = x * C + c;
                switch (im.pixel_type) {
                    case FSAD_PIXEL_U8: v[c] = static_cast<float>(r[k]) / 255.0f; break;
                    case FSAD_PIXEL_U16: {
                        uint16_t u;
                        std::memcpy(&u, r + 2 * k, 2);
                        v[c] = static_cast<float>(u) / 65535.0f;
                        break;
                    }
                    default: {
                        float f;
                        std::memcpy(&f, r + 4 * k, 4);
                        v[c] = f;
                    }
                }
            }
            if (C == 1) v[1] = v[2] = v[0];
            for (int64_t c = 0; c < 3; ++c) out[c * plane + y * W + x] = v[c];
        }
    }
    return t;
}

std::vector<fsad::Tensor> to_tensors(const fsad_image* images, size_t n) {
    need(images != nullptr || n == 0, "images is NULL");
    std::vector<fsad::Tensor> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = to_tensor(images[i], i);
    return v;
}

std::vector<fsad::Tensor> load_files(const char* const* paths, size_t n) {
    need(paths != nullptr || n == 0, "paths is NULL");
    std::vector<fsad::Tensor> v(n);
    for (size_t i = 0; i < n; ++i) {
        need(paths[i] != nullptr, "paths[" + std::to_string(i) + "] is NULL");
        v[i] = fsad::io::load_image(paths[i]);
    }
    return v;
}

const fsad::Detector& fitted(const fsad_detector* d) {
    if (!d->det || !d->det->fitted()) throw StateError("the detector is not fitted (call fit or load a model)");
    return *d->det;
}

std::vector<float> score(const fsad_detector* d, const std::vector<fsad::Tensor>& imgs) {
    std::optional<fsad::ops::PrecisionScope> scope;
    if (d->precision) scope.emplace(*d->precision);
    return fitted(d).score(imgs);
}

void fit(fsad_detector* d, const std::vector<fsad::Tensor>& imgs, fsad_progress_fn progress, void* user) {
    need(!imgs.empty(), "no images given (need at least one)");
    if (d->loaded)
        throw StateError("a detector loaded from a model file is not fitted again (its backbone's weights live in "
                         "the file, not in a checkpoint); create a detector with \"weights\" and fit that");
    std::optional<fsad::ops::PrecisionScope> scope;
    if (d->precision) scope.emplace(*d->precision);
    // a fresh detector, swapped in on success: a failed or cancelled fit leaves the old one
    fsad::Detector fresh(d->cfg);
    fresh.fit(imgs, [&](const fsad::FitProgress& p) {
        if (progress && progress(p.stage.c_str(), p.done, p.total, p.loss, user) != 0) throw Cancelled();
    });
    std::unique_lock lock(d->mu);
    d->det.emplace(std::move(fresh));
}

char* copy_string(const std::string& s) {
    char* p = static_cast<char*>(std::malloc(s.size() + 1));
    if (!p) throw std::bad_alloc();
    std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

}  // namespace

extern "C" {

int32_t fsad_abi_version(void) { return FSAD_ABI_VERSION; }
const char* fsad_version(void) { return FSAD_VERSION_STRING; }
const char* fsad_last_error(void) { return g_last_error.c_str(); }
void fsad_free(void* p) { std::free(p); }

const char* fsad_status_name(int32_t s) {
    switch (s) {
        case FSAD_OK: return "ok";
        case FSAD_ERR_ARGUMENT: return "argument";
        case FSAD_ERR_IO: return "io";
        case FSAD_ERR_FORMAT: return "format";
        case FSAD_ERR_STATE: return "state";
        case FSAD_ERR_CANCELLED: return "cancelled";
        case FSAD_ERR_DEVICE: return "device";
        case FSAD_ERR_OUT_OF_MEMORY: return "out of memory";
        case FSAD_ERR_INTERNAL: return "internal";
        default: return "unknown status";
    }
}

fsad_status fsad_detector_create(const char* config_json, fsad_detector** out) {
    return guarded("fsad_detector_create", [&] {
        need(out != nullptr, "out is NULL");
        *out = nullptr;
        json user = json::object();
        if (config_json && *config_json) {
            try {
                user = json::parse(config_json);
            } catch (const json::exception& e) {
                throw ArgumentError(std::string("the configuration is not valid JSON: ") + e.what());
            }
            need(user.is_object(), "the configuration must be a JSON object, got " + user.dump());
        }
        auto h = std::make_unique<fsad_detector>();
        std::string device = "cpu";
        if (user.contains("device")) {
            need(user["device"].is_string(), "\"device\" must be a string (\"cpu\", \"cuda\", \"cuda:N\")");
            device = user["device"].get<std::string>();
            user.erase("device");
        }
        h->cfg.device = device_of(device);
        if (user.contains("precision")) {
            need(user["precision"].is_string(), "\"precision\" must be a string (fp32, tf32, bf16)");
            h->precision = fsad::ops::parse_precision(user["precision"].get<std::string>());
            need(*h->precision != fsad::ops::Precision::TF32 || h->cfg.device.is_cuda(),
                 "\"precision\": \"tf32\" applies to a CUDA device only (the CPU computes in exact FP32)");
            user.erase("precision");
        }
        int threads = 0;
        if (user.contains("threads")) {
            need(user["threads"].is_number_integer() && user["threads"].get<int>() >= 0,
                 "\"threads\" must be an integer >= 0 (0 = all cores)");
            threads = user["threads"].get<int>();
            user.erase("threads");
        }
        const json defaults = json::parse(fsad::to_json(fsad::DetectorConfig{}));
        std::vector<std::string> unknown;
        check_keys(user, defaults, "", unknown);
        if (!unknown.empty()) {
            std::string list;
            for (const auto& k : unknown) list += (list.empty() ? "" : ", ") + ("\"" + k + "\"");
            throw ArgumentError("unknown configuration key(s) " + list +
                                " (the keys are those of a model file's config, plus device, precision, threads)");
        }
        json merged = defaults;
        merged.merge_patch(user);
        try {
            const fsad::Device dev = h->cfg.device;
            h->cfg = fsad::detector_config_from_json(merged.dump());
            h->cfg.device = dev;
        } catch (const fsad::Error& e) {
            throw ArgumentError(e.what());
        }
        h->cfg.threads = threads;
        if (h->cfg.weights == "auto") {  // the fsad tool's search: $FSAD_WEIGHTS, ~/.cache/fsad/weights
            h->cfg.weights = fsad::nn::find_weights(h->cfg.backbone);
            if (h->cfg.weights.empty()) {
                std::string paths;
                for (const auto& p : fsad::nn::weight_search_paths(h->cfg.backbone)) paths += (paths.empty() ? "" : ", ") + p;
                throw ArgumentError("\"weights\": \"auto\": no " + fsad::nn::to_string(h->cfg.backbone) +
                                    " weights found (looked in " + paths + ")");
            }
        }
        fsad::Detector check(h->cfg);  // validates the configuration now, not at fit
        (void)check;
        *out = h.release();
    });
}

fsad_status fsad_detector_load(const char* path, const char* device, fsad_detector** out) {
    return guarded("fsad_detector_load", [&] {
        need(out != nullptr, "out is NULL");
        *out = nullptr;
        need(path != nullptr, "path is NULL");
        auto h = std::make_unique<fsad_detector>();
        const fsad::Device dev = device_of(device ? device : "cpu");
        h->det.emplace(fsad::Detector::load(path, dev));
        h->cfg = h->det->config();
        h->loaded = true;
        *out = h.release();
    });
}

void fsad_detector_free(fsad_detector* d) { delete d; }

fsad_status fsad_detector_fit_files(fsad_detector* d, const char* const* paths, size_t n, fsad_progress_fn progress,
                                    void* user) {
    return guarded("fsad_detector_fit_files", [&] {
        need(d != nullptr, "detector is NULL");
        fit(d, load_files(paths, n), progress, user);
    });
}

fsad_status fsad_detector_fit_images(fsad_detector* d, const fsad_image* images, size_t n, fsad_progress_fn progress,
                                     void* user) {
    return guarded("fsad_detector_fit_images", [&] {
        need(d != nullptr, "detector is NULL");
        fit(d, to_tensors(images, n), progress, user);
    });
}

fsad_status fsad_detector_score_images(const fsad_detector* d, const fsad_image* images, size_t n, float* scores) {
    return guarded("fsad_detector_score_images", [&] {
        need(d != nullptr, "detector is NULL");
        need(scores != nullptr || n == 0, "scores is NULL");
        const std::vector<fsad::Tensor> imgs = to_tensors(images, n);
        std::shared_lock lock(d->mu);
        const std::vector<float> s = score(d, imgs);
        std::copy(s.begin(), s.end(), scores);
    });
}

fsad_status fsad_detector_score_files(const fsad_detector* d, const char* const* paths, size_t n, float* scores) {
    return guarded("fsad_detector_score_files", [&] {
        need(d != nullptr, "detector is NULL");
        need(scores != nullptr || n == 0, "scores is NULL");
        const std::vector<fsad::Tensor> imgs = load_files(paths, n);
        std::shared_lock lock(d->mu);
        const std::vector<float> s = score(d, imgs);
        std::copy(s.begin(), s.end(), scores);
    });
}

fsad_status fsad_detector_decide_images(const fsad_detector* d, const fsad_image* images, size_t n, float* scores,
                                        uint8_t* anomalous) {
    return guarded("fsad_detector_decide_images", [&] {
        need(d != nullptr, "detector is NULL");
        need(anomalous != nullptr || n == 0, "anomalous is NULL");
        const std::vector<fsad::Tensor> imgs = to_tensors(images, n);
        std::shared_lock lock(d->mu);
        const std::vector<float> s = score(d, imgs);
        const double t = d->det->threshold();
        for (size_t i = 0; i < n; ++i) {
            if (scores) scores[i] = s[i];
            anomalous[i] = static_cast<double>(s[i]) > t ? 1 : 0;
        }
    });
}

fsad_status fsad_detector_score_map(const fsad_detector* d, const fsad_image* image, float* map, size_t capacity,
                                    float* score_out) {
    return guarded("fsad_detector_score_map", [&] {
        need(d != nullptr, "detector is NULL");
        need(image != nullptr, "image is NULL");
        need(map != nullptr, "map is NULL");
        const fsad::Tensor img = to_tensor(*image, 0);
        const size_t need_len = static_cast<size_t>(image->width) * static_cast<size_t>(image->height);
        need(capacity >= need_len, "map holds " + std::to_string(capacity) + " floats, the image needs width x height = " +
                                       std::to_string(need_len));
        std::shared_lock lock(d->mu);
        const fsad::Detector& det = fitted(d);
        if (det.config().scorer == fsad::Scorer::Global)
            throw StateError("the global scorer gives one score per image and no anomaly map (fit with \"scorer\": "
                             "\"patch-gauss\", \"patch-knn\", \"patch-sum\" or \"auto\")");
        std::optional<fsad::ops::PrecisionScope> scope;
        if (d->precision) scope.emplace(*d->precision);
        // Detector::score_map without discarding the score: the view's map upsampled to the image
        fsad::Detector::Scored sv = det.score_views({img}, true);
        fsad::Tensor m = sv.maps[0];
        const int64_t H = image->height, W = image->width;
        if (m.dim(0) != H || m.dim(1) != W)
            m = fsad::io::resize_bilinear(m.reshape(fsad::Shape{1, m.dim(0), m.dim(1)}), H, W);
        std::memcpy(map, m.data(), need_len * sizeof(float));
        if (score_out) *score_out = sv.scores[0];
    });
}

fsad_status fsad_detector_threshold(const fsad_detector* d, double* threshold) {
    return guarded("fsad_detector_threshold", [&] {
        need(d != nullptr && threshold != nullptr, "detector or threshold is NULL");
        std::shared_lock lock(d->mu);
        *threshold = fitted(d).threshold();
    });
}

fsad_status fsad_detector_set_threshold(fsad_detector* d, double threshold) {
    return guarded("fsad_detector_set_threshold", [&] {
        need(d != nullptr, "detector is NULL");
        need(threshold == threshold, "threshold is NaN");
        std::unique_lock lock(d->mu);
        if (!d->det) throw StateError("the detector is not fitted: fit sets the threshold");
        d->det->set_threshold(threshold);
    });
}

fsad_status fsad_detector_is_fitted(const fsad_detector* d, int32_t* is_fitted) {
    return guarded("fsad_detector_is_fitted", [&] {
        need(d != nullptr && is_fitted != nullptr, "detector or fitted is NULL");
        std::shared_lock lock(d->mu);
        *is_fitted = d->det && d->det->fitted() ? 1 : 0;
    });
}

fsad_status fsad_detector_config_json(const fsad_detector* d, char** out) {
    return guarded("fsad_detector_config_json", [&] {
        need(d != nullptr && out != nullptr, "detector or out is NULL");
        *out = nullptr;
        std::shared_lock lock(d->mu);
        *out = copy_string(fsad::to_json(d->det ? d->det->config() : d->cfg));
    });
}

fsad_status fsad_detector_save(const fsad_detector* d, const char* path) {
    return guarded("fsad_detector_save", [&] {
        need(d != nullptr, "detector is NULL");
        need(path != nullptr && *path, "path is NULL or empty");
        std::shared_lock lock(d->mu);
        fitted(d).save(path);
    });
}

}  // extern "C"
