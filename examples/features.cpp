// fsad_features: loads a backbone (ImageNet weights from a safetensors file when given) and
// prints the pooled feature of each image. Without images it runs on an embedded default: a
// procedurally generated texture and the same texture with a scratch, and reports how far
// apart their features are. This is the main job until the method (issue 3) lands.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fsad/fsad.hpp>
#include <iostream>

using namespace fsad;

namespace {
// A brushed-metal-like texture; `scratch` adds a bright diagonal line (a synthetic defect).
Tensor make_texture(int64_t size, bool scratch, uint64_t seed) {
    Rng rng(seed);
    Tensor img = Tensor::empty(Shape{3, size, size});
    std::vector<float> rowpat(static_cast<size_t>(size));
    for (auto& v : rowpat) v = rng.normal(0.0f, 0.04f);
    for (int64_t y = 0; y < size; ++y)
        for (int64_t x = 0; x < size; ++x) {
            float v = 0.55f + rowpat[static_cast<size_t>(y)] + 0.05f * std::sin(0.3f * static_cast<float>(x)) +
                      rng.normal(0.0f, 0.02f);
            if (scratch && std::llabs((x - y) - size / 8) < 2 && x > size / 4 && x < 3 * size / 4) v = 0.95f;
            for (int64_t c = 0; c < 3; ++c) img.data()[(c * size + y) * size + x] = std::clamp(v - 0.03f * static_cast<float>(c), 0.0f, 1.0f);
        }
    return img;
}
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Print backbone features of images (fsad)"};
    std::string backbone = "mobilenetv2", weights;
    int threads = 0, res = 224;
    std::vector<std::string> images;
    app.add_option("--backbone", backbone, "resnet18|resnet34|resnet50|resnet101|mobilenetv2");
    app.add_option("--weights", weights, "safetensors checkpoint (torchvision key names); default: $FSAD_WEIGHTS");
    app.add_option("--threads", threads, "CPU threads (default: all cores)");
    app.add_option("--res", res, "working resolution")->check(CLI::Range(32, 1024));
    app.add_option("images", images, "image files (default: an embedded synthetic pair)");
    CLI11_PARSE(app, argc, argv);
    try {
        if (threads > 0) set_num_threads(threads);
        if (weights.empty())
            if (const char* e = std::getenv("FSAD_WEIGHTS")) weights = e;
        nn::BackboneConfig cfg{nn::parse_backbone_kind(backbone)};
        std::shared_ptr<nn::Backbone> net;
        if (!weights.empty()) {
            net = nn::load_backbone(cfg, weights);
            std::cout << "backbone " << backbone << " with weights " << weights << "\n";
        } else {
            net = nn::make_backbone(cfg, 0);
            std::cout << "backbone " << backbone << " with RANDOM weights (no --weights / $FSAD_WEIGHTS given):\n"
                         "  features are not ImageNet features; pass real weights for meaningful numbers\n";
        }
        net->eval();
        std::vector<Tensor> batch;
        std::vector<std::string> names;
        if (images.empty()) {
            batch = {make_texture(res, false, 1), make_texture(res, true, 1)};
            names = {"embedded:texture", "embedded:texture+scratch"};
        } else {
            for (const auto& p : images) {
                batch.push_back(io::resize_bilinear(io::load_image(p), res, res));
                names.push_back(p);
            }
        }
        std::vector<Tensor> normed;
        for (auto& b : batch) normed.push_back(io::imagenet_normalize(b).reshape(Shape{1, 3, res, res}));
        auto t0 = std::chrono::steady_clock::now();
        NoGradGuard ng;
        Tensor f = net->forward(Var(ops::concat(normed, 0))).value();
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        Tensor fn = ops::l2_normalize_forward(f, 1e-12f);
        for (size_t i = 0; i < names.size(); ++i) {
            std::vector<float> v = f[static_cast<int64_t>(i)].to_vector();
            double n2 = 0;
            for (float x : v) n2 += static_cast<double>(x) * x;
            std::cout << names[i] << ": dim " << v.size() << ", |f| " << std::sqrt(n2) << ", f[0:6] =";
            for (size_t k = 0; k < 6 && k < v.size(); ++k) std::cout << " " << v[k];
            std::cout << "\n";
        }
        if (names.size() >= 2) {
            Tensor c = ops::cosine_similarity_forward(fn.slice(0, 1), fn.slice(1, 2), 1e-8f);
            std::cout << "cosine(" << names[0] << ", " << names[1] << ") = " << c.item() << "\n";
        }
        std::cout << names.size() << " image(s) at " << res << " px in " << ms << " ms on " << get_num_threads()
                  << " thread(s)\n";
    } catch (const Error& e) {
        std::cerr << "fsad_features: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
