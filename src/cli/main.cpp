// fsad: the command-line tool. Verbs: fit, score, eval, demo, info, synth. Every verb has --help;
// options can also come from a TOML config file (--config); errors name the file or option and
// exit non-zero; outputs are written under temporary names and renamed, so Ctrl-C or an error
// never leaves a half-written model, CSV or report.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app.hpp"
#include "verbs.hpp"

using namespace fsad;
using namespace fsad::cli;

int main(int argc, char** argv) {
    Cli cli;
    CLI::App& app = cli.app;
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    install_signal_handlers();
    std::string command;
    for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
    try {
        if (*cli.c_fit) return run_fit(cli.fit, cli.quiet);
        if (*cli.c_score) return run_score(cli.score, cli.quiet);
        if (*cli.c_eval) return run_eval(cli.eval, cli.quiet, command, cli.c_eval->config_to_str(true, false), cli.c_eval);
        if (*cli.c_demo) return run_demo(cli.demo, cli.quiet, command, cli.c_demo->config_to_str(true, false));
        if (*cli.c_info) return run_info(cli.info);
        if (*cli.c_bench) return run_bench(cli.bench);
        if (*cli.c_synth) return run_synth(cli.synth);
    } catch (const Interrupted&) {
        std::cerr << "fsad: interrupted; nothing was written\n";
        return 130;
    } catch (const std::exception& e) {
        std::cerr << "fsad " << app.get_subcommands().front()->get_name() << ": error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
