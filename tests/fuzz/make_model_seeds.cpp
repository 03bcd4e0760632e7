// Writes the model fuzzer's seeds (seeds/model/): detectors of a tiny ResNet-18 (width 0.02) fitted on a
// few random images, one per scorer, 30 KB each. Run by hand when the model file
// changes: make_model_seeds tests/fuzz/seeds/model
#include <cstdio>
#include <string>
#include <vector>

#include "fsad/core/rng.hpp"
#include "fsad/method/detector.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_model_seeds DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    fsad::Rng rng(7);
    std::vector<fsad::Tensor> shots;
    for (int i = 0; i < 4; ++i) shots.push_back(rng.uniform_tensor(fsad::Shape{3, 32, 48}, 0.0f, 1.0f));
    struct Seed {
        const char* file;
        fsad::nn::BackboneKind kind;
        float width;
        fsad::Scorer scorer;
        fsad::View view;
    };
    const Seed seeds[] = {
        {"resnet18_global.fsad", fsad::nn::BackboneKind::ResNet18, 0.02f, fsad::Scorer::Global, fsad::View::Squash},
        {"resnet18_patch_gauss.fsad", fsad::nn::BackboneKind::ResNet18, 0.02f, fsad::Scorer::PatchGauss, fsad::View::Shots},
        {"resnet18_patch_knn.fsad", fsad::nn::BackboneKind::ResNet18, 0.02f, fsad::Scorer::PatchKnn, fsad::View::Keep},
        {"resnet18_patch_sum.fsad", fsad::nn::BackboneKind::ResNet18, 0.02f, fsad::Scorer::PatchSum, fsad::View::Shots},
    };
    for (const Seed& s : seeds) {
        fsad::DetectorConfig cfg;
        cfg.backbone = s.kind;
        cfg.width = s.width;
        cfg.resolution = 32;
        cfg.scorer = s.scorer;
        cfg.view = s.view;
        cfg.patch.max_bank = 64;
        cfg.threads = 1;
        fsad::Detector d(cfg);
        d.fit(shots);
        d.save(dir + "/" + s.file);
        std::printf("%s\n", s.file);
    }
    return 0;
}
