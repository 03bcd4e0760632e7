// A third-party program built against the installed fsad package.
#include <fsad/fsad.hpp>
#include <iostream>

int main() {
    auto b = fsad::nn::make_backbone({fsad::nn::BackboneKind::ResNet18, 0.125f}, 0);
    b->eval();
    fsad::NoGradGuard ng;
    fsad::Var f = b->forward(fsad::Var(fsad::Rng(1).normal_tensor(fsad::Shape{1, 3, 32, 32}, 0, 1)));
    std::cout << "feature dim " << f.shape()[1] << "\n";
    return f.shape()[1] == 64 ? 0 : 1;
}
