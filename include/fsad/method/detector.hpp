// fsad::Detector: the embeddable facade. Fit on a few normal images (optionally fine-tuning the
// backbone with the paper's contrastive method), score images by Mahalanobis distance under the
// Gaussian of the adapted features, decide against a threshold calibrated on normal data only,
// and save/load everything as one versioned model file.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fsad/method/byol.hpp"
#include "fsad/method/density.hpp"
#include "fsad/method/patch.hpp"

namespace fsad {

/// How an image is scored (method/patch.hpp has the patch scorers' definitions).
enum class Scorer {
    Global,      ///< the paper: one pooled feature per view, Gaussian density, Mahalanobis distance
    PatchGauss,  ///< one Gaussian shared by all patch positions; image score = max of the smoothed map
    PatchKnn,    ///< nearest-neighbour distance to a coreset of the shots' patches; max of the map
    PatchSum,    ///< both patch scorers, each patch score divided by that scorer's own held-out threshold
                 ///< (Detector::patch_scale), summed; max of the map of the sums
    Auto,        ///< decided at fit time from the shots alone: patch-sum, or the global scorer when no
                 ///< patch scorer separates the held-out shots from synthetic defects pasted into them
                 ///< (PatchConfig::fallback_auroc; Detector::selection has each one's synthetic AUROC)
};
Scorer parse_scorer(const std::string& s);  ///< auto | global | patch-gauss | patch-knn | patch-sum
std::string to_string(Scorer s);

/// What the backbone sees of an image.
enum class View {
    Squash,  ///< resized to resolution x resolution (aspect not kept; the paper's and the references')
    Keep,    ///< short side resized to the resolution, long side in proportion (aspect kept, up to
             ///< max_aspect; beyond it the long side is squeezed to max_aspect x resolution)
    Shots,   ///< every image resized to one size fixed at fit time: the shots' median aspect ratio
             ///< (up to max_aspect) with the short side at the resolution, the long side rounded to
             ///< a multiple of 16; square when that ratio is under 1.2. Long products keep their
             ///< shape, and every image gives the same number of patches.
    Native,  ///< the image at its own size, not resized (patch scorers: covered by tiles of the
             ///< working resolution when large, DetectorConfig::tiles); an image with a side shorter
             ///< than a tile is an error
};
View parse_view(const std::string& s);  ///< squash | keep | shots | native
std::string to_string(View v);

/// Mirrored copies of the shots in the patch scorers' fit (horizontal, vertical and both flips of
/// each shot's view, as three more views of it). Auto: used when the product looks the same
/// mirrored, i.e. when a held-out shot's mirror images score, against the other shots, at most
/// PatchConfig::flip_ratio times the shot itself (median over the shots). Surfaces and textures
/// pass (Magnetic Tile: 1.00-1.04); parts with a pose do not (MPDD plates, bottles: 1.2-1.4), so
/// a mirrored part, itself a defect on some lines, is never learnt as normal.
enum class Flips { Off, On, Auto };
Flips parse_flips(const std::string& s);  ///< off | on | auto
std::string to_string(Flips f);

struct PatchConfig {
    double map_sigma = 4.0;  ///< Gaussian blur of the anomaly map, px of the view
    double coreset = 0.1;    ///< patch-knn: fraction of the shots' patches kept in the memory bank
    int64_t max_bank = 16384;  ///< patch-knn: at most this many bank patches
    std::vector<int64_t> stages;  ///< backbone stages tapped (forward_features' list, finest first);
                                  ///< empty = Backbone::patch_stages() (strides 8 and 16)
    double flip_ratio = 1.1;  ///< Flips::Auto: mirrored shots are used up to this score ratio
    /// Scorer::Auto without auto_global: when the best patch scorer's synthetic AUROC is below
    /// this, the patch scorers cannot tell a held-out shot from local defects pasted into it (the
    /// product's normal variation is not local: CIFAR-10's classes, 47-59, against 69-98 on the
    /// industrial sets), and the global scorer is used instead. 0 = never.
    double fallback_auroc = 0.65;
    /// DetectorConfig::tiles: neighbouring tiles overlap by at least this fraction of a tile (the
    /// cells nearer a tile's border than half the overlap come from its neighbour)
    double tile_overlap = 0.25;
    /// A second view of every image, at this fraction of the working resolution (rounded to a
    /// multiple of 16 px, at least 32; 0 = one view): fit fits the chosen patch scorer again at that
    /// resolution on the same backbone (its own mirror test and threshold), and an image's score is
    /// the sum of the two views' scores, each divided by its own view's threshold
    /// (Detector::view_scale); the anomaly map is the sum of the two maps divided the same way, the
    /// second upsampled to the first view's size. Coarser patches see large defects whole (Magnetic
    /// Tile's Uneven regions: +3.7 to +4.1 image AUROC at 5/7) and the finer view keeps the small
    /// ones (docs/results.md, "Two views"). The global scorer, View::Native (whose views are not
    /// resized) and a second resolution equal to the first keep one view; fit then stores 0.
    /// Default 5/7: 224 px -> 160, 448 -> 320.
    double second_view = 5.0 / 7.0;
};

/// The defaults are the recipe measured best across every dataset fsad was evaluated on
/// (docs/results.md): ImageNet MobileNetV2 features without fine-tuning, the shots' own views
/// (N_A = 0) at the shots' aspect ratio (View::Shots) and at a resolution chosen from the shots'
/// size (auto_resolution), the patch scorer chosen per product from the shots (Scorer::Auto).
struct DetectorConfig {
    nn::BackboneKind backbone = nn::BackboneKind::MobileNetV2;
    float width = 1.0f;
    std::string weights;  ///< safetensors checkpoint; empty = random initialisation (no pretraining)
    bool adapt = false;   ///< contrastive fine-tuning on the shots (byol.steps); false = source features
    method::ByolOptions byol;  ///< steps, losses, negatives, augmentation (byol.augment.size = resolution)
    /// Working resolution, px (the short side of the views); 0 = auto: fit picks 448 when the
    /// shots' median short side has at least 448 px, else 224 (auto_resolution), and stores it.
    int64_t resolution = 0;
    int64_t resize_short = 0;  ///< test-time preprocessing: 0 = resize to resolution x resolution;
                               ///< > 0 = resize the short side to this, centre-crop the resolution
    int64_t n_augment = 0;     ///< augmented copies of each shot for the density (N_A); 0 = the
                               ///< shots' own views only
    Scorer scorer = Scorer::Auto;
    bool auto_global = false;  ///< Scorer::Auto: the global scorer is a candidate too, and two of the
                               ///< four synthetic defects per held-out shot corrupt the whole image
    View view = View::Shots;   ///< square products: the same as Squash
    Flips flips = Flips::Auto;  ///< patch scorers: mirrored shots in the fit; fit resolves Auto to On/Off
    double max_aspect = 8.0;   ///< View::Keep and View::Shots: longest side / shortest side kept
    int64_t view_h = 0, view_w = 0;  ///< View::Shots: the view's size, set by fit (0 before)
    /// Patch scorers: views run through the backbone in overlapping square tiles whose patch
    /// features are stitched into one grid (method::plan_tiles), so that memory stays bounded
    /// whatever the view's size and the fit sees the views exactly as scoring does. 0 = auto: tiles
    /// of the resolution (rounded down to a multiple of 32) for views of more than kAutoTileArea
    /// tiles' area (View::Native's large images; the shots view is at most max_aspect = 8 tiles),
    /// every other view whole, in batches of about that many tiles' pixels; -1 = never; > 0 =
    /// tiles of this many px (a multiple of 32, at least 64) for every view larger than a tile,
    /// and a view with a side shorter than a tile is an error. The global scorer runs views whole.
    int64_t tiles = 0;
    static constexpr int64_t kAutoTileArea = 16;
    PatchConfig patch;
    method::GaussianOptions density;
    /// Decision threshold. Global scorer: this quantile of the leave-one-shot-out scores of the
    /// augmented copies (calibrate_threshold). Patch scorers: each shot's view scored by the scorer
    /// fitted on the other shots, and the threshold is this quantile of a log-normal fitted to those
    /// n scores, widened for its n samples (a prediction bound: exp(m + z_q s sqrt(1 + 1/n))).
    double threshold_quantile = 0.99;
    /// The prediction bound's prior on the spread of the log held-out scores (a scaled inverse
    /// chi-square prior on their variance: spread_prior^2 worth spread_prior_weight samples; 0 = no
    /// prior, the n scores' own deviation alone). Five or ten scores estimate their spread badly:
    /// one fit's bound lands far above the normals (recall near 0 at 5 shots on MPDD) and another's
    /// among them; the normal test images' spreads on every dataset here are 0.07-0.18, and with
    /// weight 5 a spread of 0.45 still gets a mean false-positive rate under 5% (prediction_bound).
    double spread_prior = 0.15;
    double spread_prior_weight = 5;
    int threads = 0;                   ///< 0 = all cores
    uint64_t seed = 0;
    /// Where the backbone runs (fine-tuning with its augmented views, features) and where scoring
    /// runs up to each image's score and anomaly map (Mahalanobis and nearest-neighbour distances,
    /// the maps upsampled and blurred); the fits of the densities and the coreset, and the fit's
    /// held-out scoring, run on the CPU. Not stored in the model file: a model fitted on a GPU loads
    /// on a CPU and back.
    Device device = Device::cpu();
};

/// DetectorConfig::resolution 0 (auto): 448 when the median short side of the shots has at least
/// 448 px, else 224. Large images keep detail that small defects need (MPDD's 512 px plates: +1.7 /
/// +0.8 image AUROC at 5 / 10 shots over 224), smaller ones are not enlarged (Magnetic Tile's,
/// median 257 px, lost 2 points at 320). requires shots non-empty.
int64_t auto_resolution(const std::vector<Tensor>& shots);

struct FitProgress {
    std::string stage;  ///< "fine-tune", "features", "density", "threshold"
    int64_t done = 0, total = 0;
    float loss = 0;     ///< fine-tuning loss of the last step
};

class Detector {
public:
    explicit Detector(DetectorConfig cfg = {});

    /// Fits on normal images (RGB [3,H,W] in [0,1], any size). requires at least one image.
    /// `progress` is called between steps on the calling thread; it may throw to cancel fit (the
    /// exception propagates; the detector must then be fitted again: its backbone may be partly
    /// fine-tuned). The C ABI fits a fresh detector and keeps the old one on failure.
    void fit(const std::vector<Tensor>& normal, const std::function<void(const FitProgress&)>& progress = {});
    /// Convenience: decodes the files first (errors name the file).
    void fit_files(const std::vector<std::string>& paths, const std::function<void(const FitProgress&)>& progress = {});

    /// Anomaly scores of images (global: Mahalanobis distance; patch scorers: the maximum of the
    /// smoothed anomaly map); thread-safe on a fitted detector.
    std::vector<float> score(const std::vector<Tensor>& images) const;
    /// Anomaly maps [H, W] of images [3, H, W] (patch scorers only: the global scorer has none),
    /// upsampled to each image's own size; higher = more anomalous, on the scale of score().
    std::vector<Tensor> score_map(const std::vector<Tensor>& images) const;
    /// Scores and, when `maps`, the anomaly maps at the view's size (what score() and score_map()
    /// are made from; the evaluation compares these maps with masks resized to the view).
    struct Scored {
        std::vector<float> scores;
        std::vector<Tensor> maps;  ///< [h, w] of each image's view; empty unless asked
    };
    Scored score_views(const std::vector<Tensor>& images, bool maps) const;
    /// The view of an image that the backbone sees (DetectorConfig::view, resize_short).
    Tensor view_of(const Tensor& img) const;
    /// Throws what scoring `image` would throw for its size (fitted: its view has a side shorter
    /// than a fixed tile): callers that know the image's file name it in their error.
    void check_image(const Tensor& image) const;
    /// The tile side, px, that a view of h x w px is run in (DetectorConfig::tiles); 0 = whole.
    /// Throws when tiles are fixed and a side of the view is shorter than a tile.
    int64_t tile_of(int64_t h, int64_t w) const;
    float score(const Tensor& image) const { return score(std::vector<Tensor>{image})[0]; }
    bool is_anomalous(const Tensor& image) const { return score(image) > threshold_; }
    double threshold() const { return threshold_; }
    void set_threshold(double t) { threshold_ = t; }

    /// Writes the model file (safetensors: backbone, mu, Cholesky factor, threshold, config,
    /// format version, checksum) atomically.
    void save(const std::string& path) const;
    /// Reads a model file; refuses other formats/versions, truncated or modified files.
    static Detector load(const std::string& path, Device device = Device::cpu());

    /// Scorer::Auto: each candidate's synthetic AUROC (held-out shots against synthetic defects
    /// pasted into them, each scored by the candidate fitted on the other shots): patch-gauss,
    /// patch-knn, patch-sum, then global when it was fitted (auto_global, or the fallback: the
    /// patch scorers' best under PatchConfig::fallback_auroc). config().scorer is patch-sum unless
    /// the global scorer was chosen. Empty for a fixed scorer or a loaded model.
    struct Candidate {
        std::string scorer;
        double synthetic_auroc = 0;
    };
    const std::vector<Candidate>& selection() const { return selection_; }
    /// Flips::Auto: the median ratio of the held-out shots' mirror-image scores to their own
    /// (config().flips is On when it is at most PatchConfig::flip_ratio); 0 when not measured.
    double flip_ratio() const { return flip_ratio_; }
    /// Scorer::PatchSum: the divisors of the patch Gaussian's and the kNN's patch scores (each
    /// scorer's prediction bound over its own held-out scores at threshold_quantile, without the
    /// spread prior: a patch at 1 lies at about that scorer's threshold); {0, 0} for the other scorers.
    std::array<double, 2> patch_scale() const { return patch_scale_; }
    /// The patch scorers' (and the fallback's) held-out scores, one per shot (each shot's view scored
    /// by the scorer fitted on the other shots; with a second view, the two views' held-out scores
    /// each over its view's threshold, summed), that the threshold was calibrated on; empty for the
    /// global scorer's own fit and for a loaded model.
    const std::vector<float>& held_out_scores() const { return held_out_; }
    /// PatchConfig::second_view: the detector of the second view (its own config(), threshold(),
    /// held_out_scores(), flip_ratio(); it shares this detector's backbone); null with one view.
    const Detector* second_view() const { return second_.get(); }
    /// With a second view: the divisors of the first and the second view's scores (each view's own
    /// threshold); {0, 0} with one view.
    std::array<double, 2> view_scale() const { return view_scale_; }

    bool fitted() const { return density_.fitted() || patch_density_.fitted() || knn_.fitted(); }
    const DetectorConfig& config() const { return cfg_; }
    const method::GaussianDensity& density() const { return density_; }
    /// The backbone; after fit and load its weights are prepared for inference
    /// (nn::Module::prepare_inference): call that again after changing them.
    nn::Backbone& backbone() const { return *backbone_; }

    static constexpr const char* kFormat = "fsad-detector";
    /// 3: a second view (files of one view are written as version 2, which fsad before it reads);
    /// 2: scorers and views; versions 1 and 2 still load
    static constexpr int kVersion = 3;

private:
    Detector(DetectorConfig cfg, std::shared_ptr<nn::Backbone> backbone);  // load(): backbone built once
    // runs the backbone over views (any sizes: grouped by size into batches), eval mode;
    // global: [n, d] on cfg.device; patch: one CPU [C, h, w] patch-feature map per view
    Tensor features(const std::vector<Tensor>& prepared,
                    const std::function<void(int64_t done)>& done = {}) const;
    std::vector<Tensor> patch_maps(const std::vector<Tensor>& prepared,
                                   const std::function<void(int64_t done)>& done = {}) const;
    // patch scorers: each view's score (and map, at the view's size, when asked), all on
    // cfg.device up to the scores and maps copied back
    void patch_score(const std::vector<Tensor>& prepared, Scored& out, bool want_maps) const;
    // the backbone's patch features [n, C, h, w] on cfg.device, batch by batch (views of one size
    // together), handed to `each` with the views' indices
    void patch_batches(const std::vector<Tensor>& prepared,
                       const std::function<void(const std::vector<size_t>& idx, const Tensor& features)>& each) const;
    // the size of an image's view (view_of without the resize)
    std::pair<int64_t, int64_t> view_size(int64_t H, int64_t W) const;
    // tile_of's error for view i, prefixed by where and i
    void check_tiles(const Tensor& view, const char* where, size_t i) const;
    void fit_patch(const std::vector<Tensor>& normal_views, const std::vector<Tensor>& copies,
                   const std::function<void(const FitProgress&)>& progress);
    // PatchConfig::second_view: fits second_ on `normal` after this detector's own fit (requested:
    // the configuration fit was called with) and recalibrates the threshold on the two views' sum
    void fit_second_view(const std::vector<Tensor>& normal, const DetectorConfig& requested,
                         const std::function<void(const FitProgress&)>& progress);
    int64_t second_resolution() const;  // the second view's resolution (PatchConfig::second_view)
    // the scorer's tensors under `prefix` (save) and back (load); `path` names the file in errors
    void put_scorer(std::map<std::string, Tensor>& t, const std::string& prefix) const;
    void get_scorer(const std::map<std::string, Tensor>& t, const std::string& prefix, const std::string& path);
    DetectorConfig cfg_;
    std::shared_ptr<nn::Backbone> backbone_;
    method::GaussianDensity density_;        // Scorer::Global
    method::GaussianDensity patch_density_;  // Scorer::PatchGauss
    method::PatchKnn knn_;                   // Scorer::PatchKnn
    std::array<double, 2> patch_scale_{0, 0};  // Scorer::PatchSum: divisors of the Gaussian's, the kNN's scores
    std::vector<Candidate> selection_;       // Scorer::Auto's table
    double flip_ratio_ = 0;                  // Flips::Auto's measurement
    std::vector<float> held_out_;            // the threshold's held-out scores (patch fits)
    std::shared_ptr<Detector> second_;       // PatchConfig::second_view's detector (shares backbone_)
    std::array<double, 2> view_scale_{0, 0};  // with second_: the two views' divisors
    double threshold_ = 0;
    bool auto_resolution_ = false;           // resolution 0 given: fit chooses it (auto_resolution)
};

/// The configuration as a JSON object (the form the model file stores; src/method/config_json.hpp
/// lists the stored fields) and back: keys a configuration lacks keep their defaults, except those
/// every model file has held since version 1; a missing key, a value of another type or an unknown
/// name is FormatError naming the key.
std::string to_json(const DetectorConfig& cfg);
DetectorConfig detector_config_from_json(const std::string& json_text);

/// The patch scorers' threshold: the one-sided q prediction bound of the next score under a
/// log-normal fitted to n >= 2 positive held-out scores: exp(m + t_{q, nu} s sqrt(1 + 1/n)), m the
/// mean of the logs, t Student's quantile with nu = n - 1 + prior_weight degrees of freedom and s^2
/// = ((n - 1) s_n^2 + prior_weight prior_spread^2) / nu, s_n the logs' sample deviation: the
/// posterior predictive quantile under a flat prior on the mean and a scaled inverse chi-square
/// prior on the variance (prior_weight pseudo-samples of spread prior_spread; 0 = none: s = s_n,
/// nu = n - 1). (A normal quantile in place of t flagged up to 7% of the normal test images in
/// single runs at q = 0.99; the empirical q-quantile of five or ten scores is their maximum, which
/// a new normal image exceeds with probability about 1/(n + 1).) requires 0 < q < 1.
double prediction_bound(const std::vector<float>& held_out, double q, double prior_spread = 0,
                        double prior_weight = 0);

/// Threshold without anomalies: for each shot, fit the Gaussian on the other shots' augmented
/// copies and score the held-out shot's copies; the threshold is the `quantile` of all those
/// scores (an estimate of how far unseen normal images fall). With one shot, the largest score of
/// its own copies times 1.5.
double calibrate_threshold(const std::vector<Tensor>& copy_features, int64_t n_shots, int64_t copies,
                           const method::GaussianOptions& opt, double quantile);

}  // namespace fsad
