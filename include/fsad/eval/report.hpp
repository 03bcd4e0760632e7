// Reports of an evaluation: report.json (machine-readable: configuration, versions, every run
// with its scores), report.md (the AUROC table in the layout of the paper's tables) and
// report.html (one self-contained page: the table, ROC curves, score distributions as the
// paper's Figure 6, and a gallery of the highest-scoring normals and lowest-scoring anomalies).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "fsad/eval/protocol.hpp"

namespace fsad::eval {

struct Reference {  ///< a published number to print beside ours
    std::string category;  ///< "mean" for the overall row
    int shots = 0;
    double auroc = 0;      ///< percent
    std::string source;    ///< e.g. "paper, Table 3, w/o np"
};

struct ReportInfo {
    std::string title = "fsad evaluation";
    std::string command;      ///< the command line that produced the report
    std::string config_json;  ///< the full configuration as a JSON object (recorded verbatim)
    std::string config_text;  ///< the configuration as a config file (TOML), re-runnable
    std::vector<std::pair<std::string, std::string>> versions;  ///< name -> version
    std::vector<Reference> references;
    std::vector<std::string> notes;  ///< caveats shown at the top of the page
};

std::string report_json(const EvalResult& r, const ReportInfo& info);
std::string report_markdown(const EvalResult& r, const ReportInfo& info);
std::string report_html(const EvalResult& r, const ReportInfo& info);

/// Writes report.json, report.md and report.html into `dir`. The folder is built under a
/// temporary name and renamed into place, so an interrupted run leaves no partial report and an
/// existing report is replaced only by a complete one.
void write_report(const std::string& dir, const EvalResult& r, const ReportInfo& info);

std::string base64(const std::string& bytes);

}  // namespace fsad::eval
