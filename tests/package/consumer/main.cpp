// A third-party program built against the installed fsad package. With a folder argument it
// also writes small good/ and test/ image folders for the embedding example.
#include <filesystem>
#include <fsad/fsad.hpp>
#include <iostream>

int main(int argc, char** argv) {
    auto b = fsad::nn::make_backbone({fsad::nn::BackboneKind::ResNet18, 0.125f}, 0);
    b->eval();
    fsad::NoGradGuard ng;
    fsad::Var f = b->forward(fsad::Var(fsad::Rng(1).normal_tensor(fsad::Shape{1, 3, 32, 32}, 0, 1)));
    std::cout << "feature dim " << f.shape()[1] << "\n";
    if (argc > 1) {
        const std::filesystem::path root = argv[1];
        std::filesystem::create_directories(root / "good");
        std::filesystem::create_directories(root / "test");
        for (int i = 0; i < 6; ++i) {
            fsad::Tensor img = fsad::Rng(static_cast<uint64_t>(i)).uniform_tensor(fsad::Shape{3, 40, 40}, 0.3f, 0.7f);
            fsad::io::write_png((root / (i < 4 ? "good" : "test") / ("img" + std::to_string(i) + ".png")).string(), img);
        }
    }
    return f.shape()[1] == 64 ? 0 : 1;
}
