// The verbs of the fsad tool, one function each; main.cpp parses the flags into these structs.
#pragma once
#include <string>
#include <vector>

#include "cli.hpp"

namespace CLI {
class App;
}

namespace fsad::cli {

struct FitArgs {
    std::string normal, output;
    int64_t shots = 0;
    DetectorArgs det;
};
struct ScoreArgs {
    std::string model, csv, precision, maps;
    Device device = Device::cpu();
    std::vector<std::string> inputs;
    bool json = false, fail_on_anomaly = false, tf32 = false;
    double threshold = -1;
    int threads = 0;
};
struct EvalArgs {
    std::string dataset, root, method = "no-adapt", report;
    std::vector<std::string> categories, corruptions;
    std::vector<int> shots{5};
    int seeds = 5;
    int64_t test_limit = 0, test_normals = 0, test_anomalies = 0;
    DetectorArgs det;
};
struct DemoArgs {
    std::string out = "fsad-demo";
    std::vector<std::string> products;
    std::vector<int> shots{5};
    int seeds = 2;
    DetectorArgs det = demo_defaults();
    static DetectorArgs demo_defaults();
};
struct BenchArgs {
    nn::BackboneKind backbone = nn::BackboneKind::ResNet18;
    std::string precision;
    Device device = Device::cpu();
    int64_t res = 224, batch = 32, steps = 3;
    int threads = 0;
    bool profile = false;
};
struct InfoArgs {
    int threads = 0;
};
struct SynthArgs {
    std::string out, layout = "mvtec";
    std::vector<std::string> products;
    int64_t size = 128, pool = 20, test = 6, seed = 0;
};

int run_fit(const FitArgs& a, bool quiet);
int run_score(const ScoreArgs& a, bool quiet);
int run_eval(const EvalArgs& a, bool quiet, const std::string& command, const std::string& config_text, CLI::App* app);
int run_demo(const DemoArgs& a, bool quiet, const std::string& command, const std::string& config_text);
int run_info(const InfoArgs& a);
int run_bench(const BenchArgs& a);
int run_synth(const SynthArgs& a);

}  // namespace fsad::cli
