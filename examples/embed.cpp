// The smallest program that embeds fsad: fit a detector on a folder of good images, score the
// images of another folder, save the model. Built against the installed package:
//   find_package(fsad REQUIRED)  target_link_libraries(embed PRIVATE fsad::fsad)
// Usage: embed GOOD_DIR TEST_DIR [--weights W.safetensors] [--backbone NAME] [--steps N]
//        [--width W] [--res R] [-o model.fsad]
#include <filesystem>
#include <fsad/fsad.hpp>
#include <iostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

static std::vector<std::string> images_in(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        std::string ext = e.path().extension().string();
        for (auto& c : ext) c = static_cast<char>(std::tolower(c));
        if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp") out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: embed GOOD_DIR TEST_DIR [--weights W] [--backbone NAME] [--steps N] [--width W] [--res R] [-o F]\n";
        return 2;
    }
    fsad::DetectorConfig cfg;
    std::string out = "model.fsad";
    for (int i = 3; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--weights") cfg.weights = v;
        else if (k == "--backbone") cfg.backbone = fsad::nn::parse_backbone_kind(v);
        else if (k == "--steps") {  // fine-tuning is off by default
            cfg.byol.steps = std::stoll(v);
            cfg.adapt = cfg.byol.steps > 0;
        }
        else if (k == "--width") cfg.width = std::stof(v);
        else if (k == "--res") cfg.resolution = std::stoll(v);
        else if (k == "-o") out = v;
        else {
            std::cerr << "embed: unknown option " << k << "\n";
            return 2;
        }
    }
    try {
        fsad::Detector det(cfg);
        det.fit_files(images_in(argv[1]), [](const fsad::FitProgress& p) {
            if (p.stage != "fine-tune") std::cerr << p.stage << "...\n";
        });
        det.save(out);
        for (const auto& path : images_in(argv[2])) {
            const float s = det.score(fsad::io::load_image(path));
            std::cout << path << "\t" << s << "\t" << (s > det.threshold() ? "ANOMALOUS" : "ok") << "\n";
        }
        std::cerr << "threshold " << det.threshold() << ", model written to " << out << "\n";
    } catch (const fsad::Error& e) {
        std::cerr << "embed: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
