// Magnetic Tile experiment (the protocol of ../shared/peers/mt_reference.py): for each seed,
// k shots drawn with Python's random.Random(seed).sample from the sorted MT_Free images, a
// Detector fitted on them (with or without contrastive fine-tuning), and the image AUROC on the
// rest of MT_Free (normal) and all defect images. Prints one JSON line per run and the mean/std.
// A research runner until `fsad eval` (the CLI issue) exists.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fsad/eval/py_random.hpp>
#include <fsad/fsad.hpp>
#include <iostream>

using namespace fsad;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> jpgs(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".jpg") out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Magnetic Tile few-shot experiment (fsad)"};
    std::string root = "../shared/data/magnetic-tile", weights = "../shared/weights/mobilenetv2_imagenet.safetensors";
    std::string backbone = "mobilenetv2", negative = "none";
    int shots = 5, seeds = 3, steps = 200, res = 224, batch = 64, threads = 0;
    float lr = 3e-4f;
    bool adapt = true, freeze_bn = false, no_colour = false;
    float rotation = 15.0f;
    app.add_option("--root", root);
    app.add_option("--weights", weights);
    app.add_option("--backbone", backbone);
    app.add_option("--shots", shots);
    app.add_option("--seeds", seeds);
    app.add_option("--steps", steps);
    app.add_option("--res", res);
    app.add_option("--batch", batch);
    app.add_option("--lr", lr);
    app.add_option("--negative", negative);
    app.add_option("--threads", threads);
    app.add_flag("!--no-adapt", adapt, "source features only (no contrastive fine-tuning)");
    app.add_flag("--freeze-bn", freeze_bn, "backbone BatchNorm in evaluation mode while fine-tuning");
    app.add_flag("--no-colour", no_colour, "affine augmentation only");
    app.add_option("--rotation", rotation, "largest rotation of the augmentation, degrees");
    CLI11_PARSE(app, argc, argv);
    try {
        std::vector<std::string> free = jpgs(fs::path(root) / "MT_Free" / "Imgs"), defect;
        for (const auto& d : fs::directory_iterator(root))
            if (d.is_directory() && d.path().filename().string().rfind("MT_", 0) == 0 && d.path().filename() != "MT_Free")
                for (const auto& p : jpgs(d.path() / "Imgs")) defect.push_back(p);
        FSAD_CHECK(!free.empty() && !defect.empty(), root, ": no MT_Free or defect images found");
        std::vector<Tensor> free_img(free.size()), defect_img(defect.size());
#pragma omp parallel for schedule(dynamic)
        for (size_t i = 0; i < free.size(); ++i) free_img[i] = io::load_image(free[i]);
#pragma omp parallel for schedule(dynamic)
        for (size_t i = 0; i < defect.size(); ++i) defect_img[i] = io::load_image(defect[i]);
        std::vector<double> aucs;
        for (int seed = 0; seed < seeds; ++seed) {
            const auto t0 = std::chrono::steady_clock::now();
            DetectorConfig c;
            c.backbone = nn::parse_backbone_kind(backbone);
            c.weights = weights;
            c.adapt = adapt;
            c.resolution = res;
            c.byol.steps = steps;
            c.byol.batch = batch;
            c.byol.lr = lr;
            c.byol.negative = method::parse_negative(negative);
            c.byol.freeze_backbone_bn = freeze_bn;
            c.byol.augment.colour = !no_colour;
            c.byol.augment.max_rotation = rotation;
            c.threads = threads;
            c.seed = static_cast<uint64_t>(seed);
            Detector det(c);
            std::vector<int64_t> pick = eval::PyRandom(static_cast<uint64_t>(seed)).sample(static_cast<int64_t>(free.size()), shots);
            std::vector<char> used(free.size(), 0);
            std::vector<Tensor> train;
            for (int64_t p : pick) {
                used[static_cast<size_t>(p)] = 1;
                train.push_back(free_img[static_cast<size_t>(p)]);
            }
            det.fit(train, [&](const FitProgress& p) {
                if (p.stage == "fine-tune" && (p.done % 20 == 0 || p.done == p.total))
                    std::cerr << "  seed " << seed << " step " << p.done << "/" << p.total << " loss " << p.loss << "\n";
            });
            std::vector<Tensor> test;
            std::vector<int> labels;
            for (size_t i = 0; i < free.size(); ++i)
                if (!used[i]) {
                    test.push_back(free_img[i]);
                    labels.push_back(0);
                }
            for (auto& t : defect_img) {
                test.push_back(t);
                labels.push_back(1);
            }
            std::vector<float> s = det.score(test);
            const double auc = 100.0 * eval::auroc(s, labels);
            int64_t fp = 0, nn_ = 0;
            for (size_t i = 0; i < s.size(); ++i)
                if (!labels[i]) {
                    ++nn_;
                    fp += s[i] > det.threshold();
                }
            aucs.push_back(auc);
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::cout << "{\"shots\": " << shots << ", \"seed\": " << seed << ", \"adapt\": " << (adapt ? "true" : "false")
                      << ", \"negative\": \"" << negative << "\", \"freeze_bn\": " << (freeze_bn ? "true" : "false")
                      << ", \"lr\": " << lr << ", \"colour\": " << (no_colour ? "false" : "true")
                      << ", \"rotation\": " << rotation << ", \"steps\": " << steps << ", \"res\": " << res
                      << ", \"auroc\": " << auc << ", \"threshold_fpr\": " << static_cast<double>(fp) / static_cast<double>(nn_)
                      << ", \"seconds\": " << secs << "}" << std::endl;
        }
        double m = 0, v = 0;
        for (double a : aucs) m += a;
        m /= static_cast<double>(aucs.size());
        for (double a : aucs) v += (a - m) * (a - m);
        std::cout << "{\"shots\": " << shots << ", \"adapt\": " << (adapt ? "true" : "false") << ", \"negative\": \""
                  << negative << "\", \"auroc_mean\": " << m << ", \"auroc_std\": " << std::sqrt(v / static_cast<double>(aucs.size()))
                  << "}" << std::endl;
    } catch (const Error& e) {
        std::cerr << "mt_experiment: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
