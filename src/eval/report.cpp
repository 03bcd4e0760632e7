#include "fsad/eval/report.hpp"

// GCC 12 reports a false -Wrestrict inside std::string concatenation (GCC bug 105329)
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fsad/core/error.hpp"
#include "fsad/eval/roc.hpp"
#include "fsad/io/file.hpp"

namespace fsad::eval {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string fmt(double v, int prec = 2) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
}

std::string esc(const std::string& s) {  // HTML text / attribute
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o += c;
        }
    }
    return o;
}

std::vector<std::string> categories(const EvalResult& r) {
    std::vector<std::string> c;
    for (const auto& x : r.runs)
        if (std::find(c.begin(), c.end(), x.category) == c.end()) c.push_back(x.category);
    return c;
}

std::vector<int> shot_counts(const EvalResult& r) {
    std::vector<int> s;
    for (const auto& x : r.runs)
        if (std::find(s.begin(), s.end(), x.shots) == s.end()) s.push_back(x.shots);
    std::sort(s.begin(), s.end());
    return s;
}

const Reference* find_ref(const ReportInfo& info, const std::string& cat, int shots) {
    for (const auto& f : info.references)
        if (f.category == cat && f.shots == shots) return &f;
    return nullptr;
}

const RunResult* first_run(const EvalResult& r, const std::string& cat, int shots) {
    const RunResult* best = nullptr;
    for (const auto& x : r.runs)
        if (x.category == cat && x.shots == shots && (!best || x.seed < best->seed)) best = &x;
    return best;
}

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

// ROC curves of a category, one per shot count (first seed), as an inline SVG.
std::string roc_svg(const EvalResult& r, const std::string& cat) {
    const double W = 280, H = 260, L = 40, B = 30, T = 10, R = 10, pw = W - L - R, ph = H - B - T;
    std::ostringstream s;
    s << "<svg class=\"roc\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" viewBox=\"0 0 " << W << " " << H << "\" role=\"img\" aria-label=\"ROC curves of " << esc(cat) << "\">";
    s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph
      << "\" fill=\"#fff\" stroke=\"#999\"/>";
    for (int i = 1; i < 5; ++i) {
        const double gx = L + pw * i / 5, gy = T + ph * i / 5;
        s << "<line x1=\"" << gx << "\" y1=\"" << T << "\" x2=\"" << gx << "\" y2=\"" << T + ph << "\" stroke=\"#eee\"/>";
        s << "<line x1=\"" << L << "\" y1=\"" << gy << "\" x2=\"" << L + pw << "\" y2=\"" << gy << "\" stroke=\"#eee\"/>";
    }
    s << "<line x1=\"" << L << "\" y1=\"" << T + ph << "\" x2=\"" << L + pw << "\" y2=\"" << T
      << "\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>";
    const auto shots = shot_counts(r);
    for (size_t k = 0; k < shots.size(); ++k) {
        const RunResult* run = first_run(r, cat, shots[k]);
        if (!run) continue;
        auto pts = roc_curve(run->scores, run->labels);
        s << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << kColours[k % 6] << "\" points=\"";
        for (const auto& p : pts) s << fmt(L + p.fpr * pw, 1) << "," << fmt(T + (1 - p.tpr) * ph, 1) << " ";
        s << "\"><title>" << shots[k] << "-shot, seed " << run->seed << ": AUROC " << fmt(100 * run->auroc)
          << "</title></polyline>";
        s << "<text x=\"" << L + pw - 4 << "\" y=\"" << T + ph - 8 - 14 * static_cast<double>(shots.size() - 1 - k)
          << "\" text-anchor=\"end\" font-size=\"11\" fill=\"" << kColours[k % 6] << "\">" << shots[k] << "-shot "
          << fmt(100 * run->auroc, 1) << "</text>";
    }
    s << "<text x=\"" << L + pw / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\" font-size=\"11\">false positive rate</text>";
    s << "<text x=\"12\" y=\"" << T + ph / 2 << "\" text-anchor=\"middle\" font-size=\"11\" transform=\"rotate(-90 12 "
      << T + ph / 2 << ")\">true positive rate</text>";
    s << "<text x=\"" << L - 4 << "\" y=\"" << T + ph + 12 << "\" text-anchor=\"end\" font-size=\"9\">0</text>";
    s << "<text x=\"" << L - 4 << "\" y=\"" << T + 8 << "\" text-anchor=\"end\" font-size=\"9\">1</text>";
    s << "<text x=\"" << L + pw << "\" y=\"" << T + ph + 12 << "\" text-anchor=\"end\" font-size=\"9\">1</text>";
    s << "</svg>";
    return s.str();
}

// Score distributions of normal and anomalous test images (histograms as densities) with the
// detector's threshold, for one run: the paper's Figure 6.
std::string hist_svg(const RunResult& run) {
    const double W = 360, H = 260, L = 40, B = 30, T = 10, R = 10, pw = W - L - R, ph = H - B - T;
    const int bins = 30;
    float lo = *std::min_element(run.scores.begin(), run.scores.end());
    float hi = std::max(*std::max_element(run.scores.begin(), run.scores.end()), static_cast<float>(run.threshold));
    lo = std::min(lo, static_cast<float>(run.threshold));
    if (!(hi > lo)) hi = lo + 1;
    std::vector<double> hn(bins, 0), ha(bins, 0);
    double nn = 0, na = 0;
    for (size_t i = 0; i < run.scores.size(); ++i) {
        int b = static_cast<int>((run.scores[i] - lo) / (hi - lo) * bins);
        b = std::clamp(b, 0, bins - 1);
        (run.labels[i] ? ha : hn)[static_cast<size_t>(b)] += 1;
        (run.labels[i] ? na : nn) += 1;
    }
    double top = 0;
    for (int b = 0; b < bins; ++b) {
        hn[static_cast<size_t>(b)] /= std::max(nn, 1.0);
        ha[static_cast<size_t>(b)] /= std::max(na, 1.0);
        top = std::max({top, hn[static_cast<size_t>(b)], ha[static_cast<size_t>(b)]});
    }
    std::ostringstream s;
    s << "<svg class=\"hist\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 "
      << W << " " << H << "\" role=\"img\" aria-label=\"score distributions\">";
    s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph << "\" fill=\"#fff\" stroke=\"#999\"/>";
    const double bw = pw / bins;
    for (int pass = 0; pass < 2; ++pass) {
        const auto& h = pass ? ha : hn;
        const char* col = pass ? "#d62728" : "#1f77b4";
        for (int b = 0; b < bins; ++b) {
            const double v = h[static_cast<size_t>(b)] / top * (ph - 4);
            if (v <= 0) continue;
            s << "<rect x=\"" << fmt(L + b * bw, 1) << "\" y=\"" << fmt(T + ph - v, 1) << "\" width=\"" << fmt(bw, 1)
              << "\" height=\"" << fmt(v, 1) << "\" fill=\"" << col << "\" fill-opacity=\"0.45\"/>";
        }
    }
    const double tx = L + (run.threshold - lo) / (hi - lo) * pw;
    s << "<line x1=\"" << fmt(tx, 1) << "\" y1=\"" << T << "\" x2=\"" << fmt(tx, 1) << "\" y2=\"" << T + ph
      << "\" stroke=\"#000\" stroke-dasharray=\"5 3\"><title>threshold " << fmt(run.threshold, 3) << "</title></line>";
    const bool left = tx > L + 0.8 * pw;  // keep the label inside the plot
    s << "<text x=\"" << fmt(left ? tx - 3 : tx + 3, 1) << "\" y=\"" << T + 12 << "\" font-size=\"10\""
      << (left ? " text-anchor=\"end\"" : "") << ">threshold</text>";
    s << "<text x=\"" << L + pw - 4 << "\" y=\"" << T + 14 << "\" text-anchor=\"end\" font-size=\"11\" fill=\"#1f77b4\">normal ("
      << nn << ")</text>";
    s << "<text x=\"" << L + pw - 4 << "\" y=\"" << T + 28 << "\" text-anchor=\"end\" font-size=\"11\" fill=\"#d62728\">anomalous ("
      << na << ")</text>";
    s << "<text x=\"" << L << "\" y=\"" << T + ph + 12 << "\" font-size=\"9\">" << fmt(lo, 2) << "</text>";
    s << "<text x=\"" << L + pw << "\" y=\"" << T + ph + 12 << "\" text-anchor=\"end\" font-size=\"9\">" << fmt(hi, 2) << "</text>";
    s << "<text x=\"" << L + pw / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\" font-size=\"11\">anomaly score (Mahalanobis distance)</text>";
    s << "<text x=\"12\" y=\"" << T + ph / 2 << "\" text-anchor=\"middle\" font-size=\"11\" transform=\"rotate(-90 12 " << T + ph / 2
      << ")\">fraction of images</text>";
    s << "</svg>";
    return s.str();
}

const Summary* find_summary(const std::vector<Summary>& sum, const std::string& cat, int shots) {
    for (const auto& s : sum)
        if (s.category == cat && s.shots == shots) return &s;
    return nullptr;
}

std::string cell(const Summary* s) {
    if (!s) return "–";
    return s->runs > 1 ? fmt(s->mean) + " ± " + fmt(s->std) : fmt(s->mean);
}

/// A by-kind cell: the image AUROC, and the kind's pixel AUROC where measured.
std::string kind_cell(const Summary* s) {
    return cell(s) + (s && s->pixel_mean >= 0 ? "; pixel " + fmt(s->pixel_mean) : std::string());
}

}  // namespace

std::string base64(const std::string& in) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
        out += tbl[v >> 18];
        out += tbl[(v >> 12) & 63];
        out += tbl[(v >> 6) & 63];
        out += tbl[v & 63];
    }
    if (i < in.size()) {
        uint32_t v = static_cast<uint8_t>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
        out += tbl[v >> 18];
        out += tbl[(v >> 12) & 63];
        out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string report_json(const EvalResult& r, const ReportInfo& info) {
    json j;
    j["format"] = "fsad-report";
    j["version"] = 1;
    j["title"] = info.title;
    j["dataset"] = r.dataset;
    j["root"] = r.root;
    j["command"] = info.command;
    j["config"] = info.config_json.empty() ? json::object() : json::parse(info.config_json);
    j["config_file"] = info.config_text;
    j["versions"] = json::object();
    for (const auto& [k, v] : info.versions) j["versions"][k] = v;
    j["notes"] = info.notes;
    j["summary"] = json::array();
    for (const auto& s : r.summary()) {
        json e = {{"category", s.category}, {"shots", s.shots}, {"auroc_mean", s.mean}, {"auroc_std", s.std}, {"runs", s.runs},
                  {"fpr_at_threshold_mean", s.fpr_mean}};
        if (s.pixel_mean >= 0) {
            e["pixel_auroc_mean"] = s.pixel_mean;
            e["pixel_auroc_std"] = s.pixel_std;
        }
        if (s.pro_mean >= 0) {
            e["pro_mean"] = s.pro_mean;
            e["pro_std"] = s.pro_std;
        }
        if (const Reference* ref = find_ref(info, s.category, s.shots)) e["reference"] = {{"auroc", ref->auroc}, {"source", ref->source}};
        j["summary"].push_back(e);
    }
    j["by_kind"] = json::array();
    for (const auto& s : r.by_kind()) {
        json e = {{"kind", s.category}, {"shots", s.shots}, {"auroc_mean", s.mean}, {"auroc_std", s.std}, {"runs", s.runs}};
        if (s.pixel_mean >= 0) {
            e["pixel_auroc_mean"] = s.pixel_mean;
            e["pixel_auroc_std"] = s.pixel_std;
        }
        j["by_kind"].push_back(e);
    }
    j["runs"] = json::array();
    for (const auto& x : r.runs)
        j["runs"].push_back({{"category", x.category}, {"shots", x.shots}, {"seed", x.seed}, {"auroc", 100 * x.auroc},
                             {"pixel_auroc", x.pixel_auroc >= 0 ? json(100 * x.pixel_auroc) : json(nullptr)},
                             {"pro", x.pro >= 0 ? json(100 * x.pro) : json(nullptr)},
                             {"pixel_auroc_by_kind", [&] {
                                  json o = json::object();
                                  for (const auto& [kind, a] : x.pixel_auroc_by_kind) o[kind] = 100 * a;
                                  return o;
                              }()},
                             {"pixel_images", x.pixel_images}, {"scorer", x.scorer}, {"flips", x.flips},
                             {"flip_ratio", x.flip_ratio},
                             {"second_view", x.second_view > 0 ? json({{"resolution", x.second_view},
                                                                       {"flips", x.second_flips},
                                                                       {"flip_ratio", x.second_flip_ratio}})
                                                               : json(nullptr)},
                             {"selection", [&] {
                                  json a = json::array();
                                  for (const auto& c : x.selection) a.push_back({{"scorer", c.scorer}, {"synthetic_auroc", 100 * c.synthetic_auroc}});
                                  return a;
                              }()},
                             {"threshold", x.threshold}, {"held_out_scores", x.held_out}, {"fpr_at_threshold", x.fpr},
                             {"tpr_at_threshold", x.tpr},
                             {"fit_seconds", x.fit_seconds}, {"score_seconds", x.score_seconds}, {"scores", x.scores},
                             {"labels", x.labels}, {"kinds", x.kinds}, {"names", x.names}});
    return j.dump(1) + "\n";
}

std::string report_markdown(const EvalResult& r, const ReportInfo& info) {
    const auto sum = r.summary();
    const auto cats = categories(r);
    const auto shots = shot_counts(r);
    auto find = [&](const std::string& c, int k) { return find_summary(sum, c, k); };
    std::ostringstream m;
    m << "# " << info.title << "\n\n";
    m << "Dataset `" << r.dataset << "` (" << r.root << "). Image AUROC in percent, mean ± std over seeds.\n\n";
    for (const auto& n : info.notes) m << "- " << n << "\n";
    if (!info.notes.empty()) m << "\n";
    m << "| category |";
    for (int k : shots) m << " " << k << "-shot |";
    m << "\n| --- |";
    for (size_t i = 0; i < shots.size(); ++i) m << " --- |";
    m << "\n";
    std::vector<std::string> rows = cats;
    if (cats.size() > 1) rows.push_back("mean");
    for (const auto& c : rows) {
        m << "| " << c << " |";
        for (int k : shots) {
            m << " " << cell(find(c, k));
            if (const Reference* ref = find_ref(info, c, k)) m << " (paper " << fmt(ref->auroc) << ")";
            m << " |";
        }
        m << "\n";
    }
    // pixel AUROC (where masks and maps exist) and the threshold's false-positive rate
    const bool any_pixel = std::any_of(sum.begin(), sum.end(), [](const Summary& s) { return s.pixel_mean >= 0; });
    for (int table = any_pixel ? 0 : 1; table < 2; ++table) {
        m << "\n" << (table == 0 ? "Pixel AUROC (anomaly maps against the masks), and PRO up to FPR 0.3" : "Normal test images flagged at the threshold (%)")
          << ":\n\n| category |";
        for (int k : shots) m << " " << k << "-shot |";
        m << "\n| --- |";
        for (size_t i = 0; i < shots.size(); ++i) m << " --- |";
        m << "\n";
        for (const auto& c : cats) {
            m << "| " << c << " |";
            for (int k : shots) {
                const Summary* s = find(c, k);
                if (!s) m << " |";
                else if (table == 0) m << " " << (s->pixel_mean >= 0 ? fmt(s->pixel_mean) + " ± " + fmt(s->pixel_std) : "n/a")
                                       << (s->pro_mean >= 0 ? "; PRO " + fmt(s->pro_mean) + " ± " + fmt(s->pro_std) : "") << " |";
                else m << " " << fmt(s->fpr_mean, 1) << " |";
            }
            m << "\n";
        }
    }
    int seeds = 0;
    for (const auto& s : sum) seeds = std::max(seeds, s.runs);
    m << "\n" << seeds << " seed(s) per cell.";
    if (!info.references.empty()) m << " Paper numbers: " << info.references.front().source << ".";
    m << "\n";
    const auto kinds = r.by_kind();
    if (!kinds.empty()) {
        m << "\nAUROC of the normal test images against each anomaly kind alone (all categories and seeds; "
             "pixel: the kind's defect pixels against every normal pixel):\n\n| kind |";
        for (int k : shots) m << " " << k << "-shot |";
        m << "\n| --- |";
        for (size_t i = 0; i < shots.size(); ++i) m << " --- |";
        m << "\n";
        std::vector<std::string> names;
        for (const auto& s : kinds)
            if (std::find(names.begin(), names.end(), s.category) == names.end()) names.push_back(s.category);
        for (const auto& n : names) {
            m << "| " << n << " |";
            for (int k : shots) m << " " << kind_cell(find_summary(kinds, n, k)) << " |";
            m << "\n";
        }
    }
    if (!info.command.empty()) m << "\nCommand: `" << info.command << "`\n";
    return m.str();
}

std::string report_html(const EvalResult& r, const ReportInfo& info) {
    const auto sum = r.summary();
    const auto cats = categories(r);
    const auto shots = shot_counts(r);
    auto find = [&](const std::string& c, int k) { return find_summary(sum, c, k); };
    std::ostringstream h;
    h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << esc(info.title) << "</title>\n<style>\n"
      << "body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}"
      << "h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}"
      << "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
      << "th:first-child,td:first-child{text-align:left}tr.mean td{font-weight:bold;background:#f6f6f6}"
      << ".ref{color:#777;font-size:.85em}.plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}"
      << ".gal{display:flex;flex-wrap:wrap;gap:8px}.gal figure{margin:0;text-align:center;font-size:.75em;width:110px}"
      << ".gal img{border:3px solid #1f77b4;image-rendering:pixelated}.gal img.a{border-color:#d62728}"
      << ".note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}"
      << "pre{background:#f4f4f4;padding:8px;overflow-x:auto;font-size:.8em}.meta{color:#666;font-size:.9em}\n"
      << "</style></head><body>\n";
    h << "<h1>" << esc(info.title) << "</h1>\n<p class=\"meta\">dataset <b>" << esc(r.dataset) << "</b> (" << esc(r.root)
      << "), " << r.runs.size() << " runs. Image AUROC in percent, mean &plusmn; std over seeds.</p>\n";
    for (const auto& n : info.notes) h << "<div class=\"note\">" << esc(n) << "</div>\n";
    h << "<h2>AUROC</h2>\n<table id=\"auroc\"><tr><th>category</th>";
    for (int k : shots) h << "<th>" << k << "-shot</th>";
    h << "</tr>\n";
    std::vector<std::string> rows = cats;
    if (cats.size() > 1) rows.push_back("mean");
    for (const auto& c : rows) {
        h << "<tr" << (c == "mean" ? " class=\"mean\"" : "") << "><td>" << esc(c) << "</td>";
        for (int k : shots) {
            h << "<td>" << esc(cell(find(c, k)));
            if (const Reference* ref = find_ref(info, c, k))
                h << " <span class=\"ref\" title=\"" << esc(ref->source) << "\">(paper " << fmt(ref->auroc) << ")</span>";
            h << "</td>";
        }
        h << "</tr>\n";
    }
    h << "</table>\n";
    // pixel AUROC (anomaly maps against masks) where measured, and the threshold's false positives
    const bool any_pixel = std::any_of(sum.begin(), sum.end(), [](const Summary& s) { return s.pixel_mean >= 0; });
    for (int table = any_pixel ? 0 : 1; table < 2; ++table) {
        h << "<h2>" << (table == 0 ? "Pixel AUROC; PRO up to FPR 0.3" : "Normal images flagged at the threshold") << "</h2>\n<table id=\""
          << (table == 0 ? "pixel" : "fpr") << "\"><tr><th>category</th>";
        for (int k : shots) h << "<th>" << k << "-shot</th>";
        h << "</tr>\n";
        for (const auto& c : cats) {
            h << "<tr><td>" << esc(c) << "</td>";
            for (int k : shots) {
                const Summary* s = find(c, k);
                h << "<td>";
                if (s && table == 0)
                    h << (s->pixel_mean >= 0 ? fmt(s->pixel_mean) + " &plusmn; " + fmt(s->pixel_std) : "n/a")
                      << (s->pro_mean >= 0 ? "; PRO " + fmt(s->pro_mean) + " &plusmn; " + fmt(s->pro_std) : "");
                if (s && table == 1) h << fmt(s->fpr_mean, 1) << "%";
                h << "</td>";
            }
            h << "</tr>\n";
        }
        h << "</table>\n";
    }
    const auto kinds = r.by_kind();
    if (!kinds.empty()) {
        std::vector<std::string> names;
        for (const auto& s : kinds)
            if (std::find(names.begin(), names.end(), s.category) == names.end()) names.push_back(s.category);
        h << "<h2>By anomaly kind</h2>\n<p class=\"meta\">AUROC of the normal test images against each kind alone, "
             "over all categories and seeds; pixel: the kind's defect pixels against every normal pixel.</p>\n"
             "<table id=\"kinds\"><tr><th>kind</th>";
        for (int k : shots) h << "<th>" << k << "-shot</th>";
        h << "</tr>\n";
        for (const auto& n : names) {
            h << "<tr><td>" << esc(n) << "</td>";
            for (int k : shots) h << "<td>" << esc(kind_cell(find_summary(kinds, n, k))) << "</td>";
            h << "</tr>\n";
        }
        h << "</table>\n";
    }
    for (const auto& c : cats) {
        h << "<h2>" << esc(c) << "</h2>\n<div class=\"plots\">" << roc_svg(r, c);
        if (const RunResult* run = first_run(r, c, shots.back())) {
            h << hist_svg(*run);
            h << "<div><p>" << shots.back() << "-shot, seed " << run->seed << ": AUROC " << fmt(100 * run->auroc)
              << ", threshold " << fmt(run->threshold, 3) << " flags " << fmt(100 * run->fpr, 1) << "% of normal and "
              << fmt(100 * run->tpr, 1) << "% of anomalous test images.</p><p>Fit " << fmt(run->fit_seconds, 1)
              << " s, scoring " << run->scores.size() << " images " << fmt(run->score_seconds, 1) << " s.</p></div>";
        }
        h << "</div>\n";
        for (const auto& x : r.runs) {
            if (x.category != c || x.gallery.empty()) continue;
            for (int lab = 0; lab < 2; ++lab) {
                h << "<h3>" << (lab ? "Lowest-scoring anomalies" : "Highest-scoring normal images") << "</h3><div class=\"gal\">";
                for (const auto& g : x.gallery)
                    if (g.label == lab)
                        h << "<figure><img " << (lab ? "class=\"a\" " : "") << "src=\"data:image/png;base64," << base64(g.png)
                          << "\" alt=\"" << esc(g.name) << "\" title=\"" << esc(g.name) << "\" width=\"96\">"
                          << (g.map_png.empty() ? std::string()
                                                : "<img src=\"data:image/png;base64," + base64(g.map_png) + "\" alt=\"anomaly map of " +
                                                      esc(g.name) + "\" title=\"anomaly map (blue: half the threshold, red: 1.5x)\" width=\"96\">")
                          << "<figcaption>"
                          << esc(g.kind) << "<br>" << fmt(g.score, 3) << "</figcaption></figure>";
                h << "</div>\n";
            }
        }
    }
    h << "<h2>Configuration</h2>\n";
    if (!info.command.empty()) h << "<p>Command: <code>" << esc(info.command) << "</code></p>\n";
    if (!info.config_text.empty()) h << "<p>Config file (rerun with <code>--config</code>):</p><pre>" << esc(info.config_text) << "</pre>\n";
    if (!info.config_json.empty()) h << "<details><summary>Detector configuration (JSON)</summary><pre>" << esc(json::parse(info.config_json).dump(2)) << "</pre></details>\n";
    h << "<table>";
    for (const auto& [k, v] : info.versions) h << "<tr><td>" << esc(k) << "</td><td>" << esc(v) << "</td></tr>";
    h << "</table>\n</body></html>\n";
    return h.str();
}

void write_report(const std::string& dir, const EvalResult& r, const ReportInfo& info) {
    FSAD_CHECK(!r.runs.empty(), "write_report: no runs to report");
    const fs::path target = fs::path(dir).lexically_normal();
    const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) throw IOError(parent.string() + ": cannot create the report's parent folder (" + ec.message() + ")");
    if (fs::exists(target, ec) && !fs::is_directory(target, ec)) throw IOError(dir + ": exists and is not a folder");
    const std::string tag = "." + std::to_string(::getpid()) + ".tmp";
    const fs::path tmp = parent / (target.filename().string() + tag);
    fs::remove_all(tmp, ec);
    fs::create_directory(tmp, ec);
    if (ec) throw IOError(tmp.string() + ": cannot create the report folder (" + ec.message() + ")");
    try {
        io::write_file_atomic((tmp / "report.json").string(), report_json(r, info));
        io::write_file_atomic((tmp / "report.md").string(), report_markdown(r, info));
        io::write_file_atomic((tmp / "report.html").string(), report_html(r, info));
        const fs::path old = parent / (target.filename().string() + ".old" + tag);
        if (fs::exists(target)) fs::rename(target, old);
        fs::rename(tmp, target);
        fs::remove_all(old, ec);
    } catch (const fs::filesystem_error& e) {
        fs::remove_all(tmp, ec);
        throw IOError(dir + ": cannot write the report (" + e.what() + ")");
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
}

}  // namespace fsad::eval
