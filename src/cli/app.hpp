// The fsad tool's command line: the CLI11 application with every verb's flags and --config (TOML),
// bound to the verbs' argument structs. Building and parsing it runs no verb.
#pragma once
#include <CLI/CLI.hpp>

#include "verbs.hpp"

namespace fsad::cli {

/// The parsed command line: after app.parse, the subcommand that was given is the one whose
/// App* is true, and its struct holds the flags (and the --config file's values).
struct Cli {
    Cli();
    Cli(const Cli&) = delete;  // the app holds pointers to the members
    Cli& operator=(const Cli&) = delete;

    CLI::App app;
    bool quiet = false;
    FitArgs fit;
    ScoreArgs score;
    EvalArgs eval;
    DemoArgs demo;
    BenchArgs bench;
    InfoArgs info;
    SynthArgs synth;
    CLI::App *c_fit = nullptr, *c_score = nullptr, *c_eval = nullptr, *c_demo = nullptr, *c_bench = nullptr,
             *c_info = nullptr, *c_synth = nullptr;
};

}  // namespace fsad::cli
