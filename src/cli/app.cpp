// The fsad tool's command line: every verb's flags and the TOML configuration (--config), bound
// to the verbs' argument structs. Parsing runs no verb (main.cpp does, after parse), so the fuzzer
// of the configuration (tests/fuzz/fuzz_config.cpp) parses through this same construction.
#include "app.hpp"

#include "cli.hpp"

namespace fsad::cli {

namespace {

// An option whose text `parse` turns into `field` (an enum, the device): the parser's fsad::Error,
// which says what it accepts, is the usage error, so a typo fails while parsing.
template <class Field, class Parse>
CLI::Option* add_parsed(CLI::App* c, const std::string& flag, Field& field, Parse parse, const std::string& help) {
    const CLI::Validator valid(
        [parse](std::string& s) {
            try {
                parse(s);
                return std::string();
            } catch (const Error& e) {
                return std::string(e.what());
            }
        },
        "", "parsed");
    return c->add_option_function<std::string>(flag, [&field, parse](const std::string& s) { field = parse(s); }, help)
        ->check(valid);
}

// s as a whole decimal integer, or -1 (never a valid number of pixels) when it is not one
int64_t whole_number(const std::string& s) {
    size_t used = 0;
    int64_t v = -1;
    try {
        v = std::stoll(s, &used);
    } catch (const std::exception&) {
        return -1;
    }
    return used == s.size() ? v : -1;
}

// auto (0: fit chooses) | 32 ... 1024 px
int64_t parse_resolution(const std::string& s) {
    if (s == "auto") return 0;
    const int64_t v = whole_number(s);
    if (v < 32 || v > 1024) throw Error("resolution '" + s + "': expected auto or a number of pixels from 32 to 1024");
    return v;
}

// auto (0) | off (-1) | a multiple of 32 from 64 to 4096 px
int64_t parse_tiles(const std::string& s) {
    if (s == "auto") return 0;
    if (s == "off") return -1;
    const int64_t v = whole_number(s);
    if (v < 64 || v > 4096 || v % 32 != 0)
        throw Error("tiles '" + s + "': expected auto, off or a tile side in pixels, a multiple of 32 from 64 to 4096");
    return v;
}

// cpu | cuda | cuda:N, refused while parsing when this build has no CUDA backend
Device parse_device_flag(const std::string& s) {
    const Device d = parse_device(s);
    if (d.is_cuda() && !cuda_built())
        throw Error(s + ": this build of fsad has no CUDA backend (configure with FSAD_CUDA=ON); use --device cpu");
    return d;
}

CLI::Option* add_device(CLI::App* c, Device& device) {
    return add_parsed(c, "--device", device, parse_device_flag, "cpu | cuda[:N]")->type_name("cpu|cuda[:N]");
}

const char* const kTf32Help = "shorthand for --precision tf32";
const char* const kPrecisionHelp =
    "fp32 (default: exact) | tf32 (--device cuda: TF32 tensor cores for convolutions and matrix products, "
    "about 1e-3 relative error) | bf16 (convolutions with bfloat16 operands and results, float32 sums and "
    "float32 master weights: tensor cores on a GPU, matrix products as tf32; the same numbers on the CPU, "
    "no faster there)";
const std::vector<std::string> kPrecisions{"fp32", "tf32", "bf16"};

void add_detector_flags(CLI::App* c, DetectorArgs& a) {
    DetectorConfig& f = a.cfg;
    add_parsed(c, "--backbone", f.backbone, nn::parse_backbone_kind, "resnet18 | resnet34 | resnet50 | resnet101 | mobilenetv2");
    c->add_option("--weights", a.weights,
                  "ImageNet weights (safetensors, torchvision key names); default: $FSAD_WEIGHTS, then "
                  "~/.cache/fsad/weights/<backbone>.safetensors; 'none' = random initialisation");
    c->add_option("--width", f.width, "channel width multiplier (1 = the published network)")->check(CLI::Range(0.05, 4.0));
    add_parsed(c, "--negatives", f.byol.negative, method::parse_negative,
               "negative augmentation for L_np: none | cutpaste | scar | union | cifar");
    c->add_option("--steps", f.byol.steps,
                  "contrastive fine-tuning steps (default 0: none, the patch scorers gain nothing from it; eval's "
                  "fine-tuning methods default to the paper's 200)")
        ->check(CLI::Range(0, 1000000));
    c->add_option("--batch", f.byol.batch, "fine-tuning batch size")->check(CLI::Range(2, 4096));
    c->add_option("--lr", f.byol.lr, "Adam learning rate")->check(CLI::PositiveNumber);
    add_parsed(c, "--res", f.resolution, parse_resolution,
               "working resolution, px (32-1024), or auto (default: 448 when the shots' median short side has "
               "448 px or more, else 224)")
        ->type_name("auto|PX");
    c->add_option("--resize-short", f.resize_short, "test-time: resize the short side to this, centre-crop --res (0 = plain resize)")
        ->check(CLI::Range(0, 4096));
    c->add_option("--n-augment", f.n_augment, "augmented copies of each shot for the density (N_A; 0 = the shots' own views)")->check(CLI::Range(0, 1000));
    add_parsed(c, "--scorer", f.scorer, parse_scorer,
               "auto (the patch scorer that best separates held-out shots from synthetic defects; the global scorer "
               "when none reaches --fallback-auroc) | global (the "
               "paper: pooled feature, Gaussian) | patch-gauss (one Gaussian over patch features, anomaly maps) | "
               "patch-knn (nearest patch in a coreset memory bank, anomaly maps) | patch-sum (both patch scorers, each "
               "over its own threshold, summed)");
    add_parsed(c, "--view", f.view, parse_view,
               "shots (default: one size for all images, short side --res, the shots' median aspect ratio; square "
               "for near-square products) | squash (resize to --res x --res) | keep (short side to --res, each "
               "image's own aspect; --resize-short implies squash) | native (each image at its own size, not "
               "resized; large ones in tiles of --res)");
    add_parsed(c, "--tiles", f.tiles, parse_tiles,
               "patch scorers: run large views through the backbone in overlapping square tiles stitched into one "
               "feature grid: auto (default: tiles of --res for views of more than 16 tiles' area) | off | PX (tiles "
               "of PX px, a multiple of 32, for every view larger than a tile; a view smaller than a tile is an "
               "error)")
        ->type_name("auto|off|PX");
    c->add_option("--max-aspect", f.max_aspect,
                  "shots and keep views: the longest side kept, in short sides (default 8); longer images are "
                  "squeezed to it, and fit says so")
        ->check(CLI::Range(1.0, 64.0));
    c->add_flag("--auto-global", f.auto_global,
                "--scorer auto: the global scorer is a candidate too, chosen against whole-image corruptions as well");
    c->add_option("--fallback-auroc", f.patch.fallback_auroc,
                  "--scorer auto: below this synthetic AUROC of the best patch scorer, the global scorer is fitted "
                  "instead (0-1; 0 = never; default 0.65)")
        ->check(CLI::Range(0.0, 1.0));
    add_parsed(c, "--flips", f.flips, parse_flips,
               "auto | on | off: patch scorers: mirrored shots in the fit (auto: when the shots look the same mirrored)");
    c->add_option("--second-view", f.patch.second_view,
                  "patch scorers: a second view of every image at this fraction of --res (0 = one view); each "
                  "view's score over its own threshold, summed")
        ->check(CLI::Range(0.0, 4.0));
    c->add_option("--coreset", f.patch.coreset, "patch-knn: fraction of the shots' patches kept in the memory bank")
        ->check(CLI::Range(1e-4, 1.0));
    c->add_option("--patch-stages", f.patch.stages,
                  "patch scorers: backbone stages whose maps make the patch features, comma separated, finest first "
                  "(default: the stride-8 and stride-16 stages; MobileNetV2 2,4, ResNet 1,2)")
        ->delimiter(',')
        ->check(CLI::Range(0, 16));
    c->add_flag_callback("--no-adapt", [&f] { f.adapt = false; }, "no contrastive fine-tuning: ImageNet features only");
    c->add_flag("--freeze-bn", f.byol.freeze_backbone_bn, "keep the backbone's BatchNorm statistics frozen while fine-tuning");
    c->add_option("--freeze-stages", f.byol.frozen_stages,
                  "fine-tune only the later stages: the stem and this many stages stay as loaded (ResNet: 0-4, MobileNetV2: 0-8)")
        ->check(CLI::Range(0, 64));
    c->add_flag_callback("--no-colour", [&f] { f.byol.augment.colour = false; },
                         "affine augmentation only (no colour jitter, grayscale, blur)");
    c->add_option("--quantile", f.threshold_quantile, "decision threshold: this quantile of held-out normal scores")->check(CLI::Range(0.5, 1.0));
    c->add_option("--spread-prior", f.spread_prior,
                  "patch scorers' threshold: prior spread of the log held-out scores (default 0.15; 0 = none)")
        ->check(CLI::Range(0.0, 10.0));
    c->add_option("--spread-prior-weight", f.spread_prior_weight,
                  "patch scorers' threshold: the prior's weight in held-out shots (default 5; 0 = none)")
        ->check(CLI::Range(0.0, 1e6));
    add_device(c, f.device);
    c->add_option("--precision", a.precision, kPrecisionHelp)->check(CLI::IsMember(kPrecisions));
    c->add_flag("--tf32", a.tf32, kTf32Help);
    add_parsed(c, "--train-precision", f.byol.precision, ops::parse_precision,
               "fp32 | tf32 | bf16: the fine-tuning steps' precision (default: --precision's): --train-precision bf16 "
               "with the default --precision fp32 fine-tunes on bfloat16 tensor cores and computes the Gaussian's and "
               "the scores' features in exact FP32");
    c->add_option("--threads", f.threads, "CPU threads (0 = all cores)")->check(CLI::Range(0, 1024));
    c->add_option("--seed", f.seed, "random seed (shots, augmentations, initialisation)")->check(CLI::NonNegativeNumber);
}

}  // namespace

Cli::Cli()
    : app("fsad: few-shot anomaly detection on industrial images.\n"
          "Fit a detector on a few good images, score new ones, or run the paper's protocols.") {
    app.set_config("--config", "", "read options from a TOML file ([fit], [eval], ... sections)");
    app.require_subcommand(1);
    app.fallthrough();
    app.add_flag("-q,--quiet", quiet, "no progress bars");

    c_fit = app.add_subcommand("fit", "fit a detector on a folder of normal images and save it");
    c_fit->add_option("--normal", fit.normal, "folder of normal (good) images")->required();
    c_fit->add_option("--shots", fit.shots, "use K images drawn with --seed (0 = all)")->check(CLI::Range(0, 1000000));
    c_fit->add_option("-o,--output", fit.output, "model file to write")->required();
    add_detector_flags(c_fit, fit.det);

    c_score = app.add_subcommand("score", "score images with a fitted model: anomaly score and decision");
    c_score->add_option("-m,--model", score.model, "model file written by fsad fit")->required()->check(CLI::ExistingFile);
    c_score->add_option("inputs", score.inputs, "image files or folders (searched recursively)")->required();
    c_score->add_option("--csv", score.csv, "also write path,score,threshold,anomalous to this CSV file");
    c_score->add_flag("--json", score.json, "print JSON instead of a table");
    c_score->add_option("--maps", score.maps,
                        "write an anomaly-map overlay PNG per image into this folder (patch scorers)");
    c_score->add_option("--threshold", score.threshold, "override the model's decision threshold");
    c_score->add_flag("--fail-on-anomaly", score.fail_on_anomaly, "exit with status 2 when any image is anomalous");
    c_score->add_option("--threads", score.threads, "CPU threads (0 = all cores)")->check(CLI::Range(0, 1024));
    add_device(c_score, score.device);
    c_score->add_option("--precision", score.precision, kPrecisionHelp)->check(CLI::IsMember(kPrecisions));
    c_score->add_flag("--tf32", score.tf32, kTf32Help);

    c_eval = app.add_subcommand("eval", "run a few-shot protocol on a dataset and write a report");
    c_eval->add_option("--dataset", eval.dataset, "folder | mvtec | magnetic-tile | aitex | cifar10 | cifar100")
        ->required()
        ->check(CLI::IsMember({"folder", "mvtec", "magnetic-tile", "aitex", "cifar10", "cifar100"}));
    c_eval->add_option("--root", eval.root, "dataset root folder")->required();
    c_eval->add_option("--category", eval.categories, "only these categories (repeatable)");
    c_eval->add_option("--shots", eval.shots, "shot counts, comma separated")->delimiter(',')->check(CLI::Range(1, 100000));
    c_eval->add_option("--seeds", eval.seeds, "seeds per setting (--seed, --seed + 1, ...)")->check(CLI::Range(1, 1000));
    c_eval->add_option("--method", eval.method,
                       "no-adapt (default: ImageNet features, no fine-tuning) | ours (fine-tuning with L_con + L_pp) | "
                       "ours-np (+ L_np) | contrastive (L_con only) | fixed-centre; the fine-tuning methods run --steps "
                       "(default 200)")
        ->check(CLI::IsMember({"ours", "ours-np", "no-adapt", "contrastive", "fixed-centre"}));
    c_eval->add_option("--corruptions", eval.corruptions, "cifar10: corruptions, comma separated (default: the nine of METHOD.md)")
        ->delimiter(',');
    c_eval->add_option("--test-limit", eval.test_limit, "cifar10: clean test images per class (0 = all 1000); aitex: patches per normal image")
        ->check(CLI::Range(0, 1000000));
    c_eval->add_option("--test-normals", eval.test_normals, "imbalanced protocol (Table 8): normal test images per run, drawn per seed")
        ->check(CLI::Range(0, 10000000));
    c_eval->add_option("--test-anomalies", eval.test_anomalies, "imbalanced protocol (Table 8): anomalies per run, drawn per seed")
        ->check(CLI::Range(0, 10000000));
    c_eval->add_option("--report", eval.report, "report folder (report.html, report.md, report.json)")->required();
    add_detector_flags(c_eval, eval.det);

    c_demo = app.add_subcommand("demo", "fit few-shot detectors on generated industrial textures and write a report");
    c_demo->add_option("-o,--out", demo.out, "report folder");
    c_demo->add_option("--products", demo.products, "metal, fabric, wood, stone (default: all)")->delimiter(',');
    c_demo->add_option("--shots", demo.shots, "shot counts, comma separated")->delimiter(',')->check(CLI::Range(1, 20));
    c_demo->add_option("--seeds", demo.seeds, "seeds per setting")->check(CLI::Range(1, 100));
    add_detector_flags(c_demo, demo.det);

    c_bench = app.add_subcommand("bench", "how fast this machine scores and fine-tunes (random weights)");
    add_parsed(c_bench, "--backbone", bench.backbone, nn::parse_backbone_kind,
               "resnet18 | resnet34 | resnet50 | resnet101 | mobilenetv2");
    c_bench->add_option("--res", bench.res, "resolution, px")->check(CLI::Range(32, 1024));
    c_bench->add_option("--batch", bench.batch, "batch size")->check(CLI::Range(2, 4096));
    c_bench->add_option("--steps", bench.steps, "timed fine-tuning steps")->check(CLI::Range(1, 1000));
    add_device(c_bench, bench.device);
    c_bench->add_option("--precision", bench.precision, kPrecisionHelp)->check(CLI::IsMember(kPrecisions));
    c_bench->add_option("--threads", bench.threads, "CPU threads (0 = all cores)")->check(CLI::Range(0, 1024));
    c_bench->add_flag("--profile", bench.profile, "also print the time per op (fsad::ops::Profiler) of one forward pass and one step");

    c_info = app.add_subcommand("info", "build, devices, threads, versions, where weights are looked for");
    c_info->add_option("--threads", info.threads, "CPU threads (0 = all cores)");

    c_synth = app.add_subcommand("synth", "write a generated dataset (the demo's textures) in a folder layout");
    c_synth->add_option("-o,--out", synth.out, "folder to create")->required();
    c_synth->add_option("--layout", synth.layout, "mvtec | folder")->check(CLI::IsMember({"mvtec", "folder"}));
    c_synth->add_option("--size", synth.size, "image side, px")->check(CLI::Range(16, 2048));
    c_synth->add_option("--products", synth.products, "metal, fabric, wood, stone")->delimiter(',');
    c_synth->add_option("--pool", synth.pool, "normal training images per product")->check(CLI::Range(1, 10000));
    c_synth->add_option("--test", synth.test, "normal test images and anomalous ones per defect kind")->check(CLI::Range(1, 10000));
    c_synth->add_option("--seed", synth.seed, "random seed")->check(CLI::NonNegativeNumber);

}

}  // namespace fsad::cli
