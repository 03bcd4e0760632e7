/* fsad's stable C ABI: fit a few-shot anomaly detector, score images, save and load it, from any
 * language that can call C (C, C#/.NET P/Invoke, Python ctypes, LabVIEW, Delphi).
 *
 * Rules of the boundary (docs/capi.md has the full page):
 *  - Every function returns an fsad_status (FSAD_OK = 0) except the few queries that cannot fail.
 *    On failure, fsad_last_error() returns a message naming the problem (the file, the argument,
 *    the image index) for the calling thread; it stays valid until that thread's next fsad call.
 *  - No C++ exception, STL type or allocation crosses the boundary: results go into buffers the
 *    caller provides, and the only memory fsad hands out (fsad_detector_config_json) is released
 *    with fsad_free.
 *  - Threads: fsad_detector_score_*, _decide_*, _score_map, _threshold, _config_json and _save
 *    may run at the same time on one handle from any number of threads. fsad_detector_fit_*,
 *    _set_threshold and fsad_detector_free take the handle exclusively: the first two wait for
 *    running scores to finish; freeing a handle that another thread still uses is undefined.
 *  - Pixels: fsad_image describes interleaved (HWC) 8-bit, 16-bit or float32 pixels, 1 (gray),
 *    3 (RGB) or 4 (RGBA, alpha dropped) channels, rows `row_stride` bytes apart. They are read
 *    once, during the call, into the detector's float RGB form; the caller keeps ownership.
 *  - Versioning: FSAD_ABI_VERSION changes only on an incompatible change (additions keep it);
 *    call FSAD_ABI_COMPATIBLE() once at start-up to check the loaded library against this header.
 */
#ifndef FSAD_FSAD_H
#define FSAD_FSAD_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(FSAD_C_BUILDING)
#    define FSAD_API __declspec(dllexport)
#  else
#    define FSAD_API __declspec(dllimport)
#  endif
#else
#  define FSAD_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI this header describes. fsad_abi_version() returns the loaded library's. */
#define FSAD_ABI_VERSION 1

typedef enum fsad_status {
    FSAD_OK = 0,
    FSAD_ERR_ARGUMENT = 1,    /**< a null pointer, a bad size, bad pixels, an invalid configuration */
    FSAD_ERR_IO = 2,          /**< a file could not be read, decoded or written */
    FSAD_ERR_FORMAT = 3,      /**< a model file is malformed, of another version, or was modified */
    FSAD_ERR_STATE = 4,       /**< the call does not fit the detector's state (e.g. scoring before fit) */
    FSAD_ERR_CANCELLED = 5,   /**< the progress callback asked fit to stop; the detector is unchanged */
    FSAD_ERR_DEVICE = 6,      /**< the device is missing or failed (CUDA) */
    FSAD_ERR_OUT_OF_MEMORY = 7,
    FSAD_ERR_INTERNAL = 8     /**< anything else; the message says what */
} fsad_status;

typedef enum fsad_pixel_type {
    FSAD_PIXEL_U8 = 1,   /**< uint8, 0..255 */
    FSAD_PIXEL_U16 = 2,  /**< uint16, 0..65535, native byte order */
    FSAD_PIXEL_F32 = 3   /**< float, 0..1 */
} fsad_pixel_type;

/** An image in the caller's memory. row_stride: bytes from one row's start to the next's
 *  (>= width * channels * pixel size; 0 = exactly that). */
typedef struct fsad_image {
    const void* data;
    int32_t width;
    int32_t height;
    int32_t channels;    /**< 1, 3 or 4 */
    int32_t pixel_type;  /**< an fsad_pixel_type */
    int64_t row_stride;
} fsad_image;

/** An opaque detector. */
typedef struct fsad_detector fsad_detector;

/** Fit progress: stage is "fine-tune", "features", "density" or "threshold"; done of total steps;
 *  loss of the last fine-tuning step (0 in the other stages). Called on the thread that called
 *  fit. Return 0 to go on, anything else to stop fit (it then returns FSAD_ERR_CANCELLED). */
typedef int (*fsad_progress_fn)(const char* stage, int64_t done, int64_t total, float loss, void* user);

/** The loaded library's ABI version (FSAD_ABI_VERSION of the header it was built with). */
FSAD_API int32_t fsad_abi_version(void);
/** fsad's version, e.g. "0.1.0"; a static string. */
FSAD_API const char* fsad_version(void);
/** The calling thread's message for its last failed call ("" when none); valid until the
 *  thread's next fsad call. */
FSAD_API const char* fsad_last_error(void);
/** "ok", "argument", "io", "format", "state", "cancelled", "device", "out of memory", "internal". */
FSAD_API const char* fsad_status_name(int32_t status);
/** Releases memory fsad returned (fsad_detector_config_json); NULL is ignored. */
FSAD_API void fsad_free(void* p);

/** Creates an unfitted detector from a JSON object with any of the keys of a model file's
 *  configuration (docs/capi.md lists them; absent keys keep the C++ defaults of DetectorConfig,
 *  an unknown key is an error), plus "device" ("cpu", "cuda", "cuda:N"), "precision" of the
 *  features and scores ("fp32", "tf32" on CUDA, "bf16") and "threads" (0 = all cores;
 *  process-wide). config_json NULL or "" = the defaults. "weights": "" = a randomly initialised
 *  backbone, "auto" = the fsad tool's search ($FSAD_WEIGHTS, ~/.cache/fsad/weights), else a
 *  safetensors checkpoint path. */
FSAD_API fsad_status fsad_detector_create(const char* config_json, fsad_detector** out);
/** Loads a model file written by fsad_detector_save or the fsad tool onto `device` (NULL = "cpu"). */
FSAD_API fsad_status fsad_detector_load(const char* path, const char* device, fsad_detector** out);
/** Frees a detector; NULL is ignored. */
FSAD_API void fsad_detector_free(fsad_detector* d);

/** Fits on n >= 1 normal images (the patch scorers need 2). progress may be NULL. On any failure
 *  or cancellation the detector keeps its previous state. A detector from fsad_detector_load is
 *  not fitted again (FSAD_ERR_STATE): create one with "weights" for that. */
FSAD_API fsad_status fsad_detector_fit_files(fsad_detector* d, const char* const* paths, size_t n,
                                             fsad_progress_fn progress, void* user);
FSAD_API fsad_status fsad_detector_fit_images(fsad_detector* d, const fsad_image* images, size_t n,
                                              fsad_progress_fn progress, void* user);

/** Anomaly scores of n images into scores[n] (global scorer: Mahalanobis distance; patch scorers:
 *  the maximum of the smoothed anomaly map). Requires a fitted detector. */
FSAD_API fsad_status fsad_detector_score_images(const fsad_detector* d, const fsad_image* images, size_t n,
                                                float* scores);
FSAD_API fsad_status fsad_detector_score_files(const fsad_detector* d, const char* const* paths, size_t n,
                                               float* scores);
/** Scores (into scores[n], may be NULL) and decisions anomalous[i] = score > threshold (1 or 0). */
FSAD_API fsad_status fsad_detector_decide_images(const fsad_detector* d, const fsad_image* images, size_t n,
                                                 float* scores, uint8_t* anomalous);
/** The anomaly map of one image at the image's own size, row-major into map[capacity]
 *  (capacity >= width * height), and its score (as fsad_detector_score_images gives it; the map
 *  at the view's size has it as maximum) into *score (may be NULL). Patch scorers only. */
FSAD_API fsad_status fsad_detector_score_map(const fsad_detector* d, const fsad_image* image, float* map,
                                             size_t capacity, float* score);

FSAD_API fsad_status fsad_detector_threshold(const fsad_detector* d, double* threshold);
FSAD_API fsad_status fsad_detector_set_threshold(fsad_detector* d, double threshold);
/** 1 when fitted (or loaded), 0 otherwise, into *fitted. */
FSAD_API fsad_status fsad_detector_is_fitted(const fsad_detector* d, int32_t* fitted);
/** The configuration as JSON (the model file's keys, after fit the chosen scorer and view size),
 *  a NUL-terminated string for the caller to release with fsad_free. */
FSAD_API fsad_status fsad_detector_config_json(const fsad_detector* d, char** json);
/** Writes the model file atomically (a failed save leaves no partial file). */
FSAD_API fsad_status fsad_detector_save(const fsad_detector* d, const char* path);

/** Nonzero when the loaded library speaks this header's ABI. */
#define FSAD_ABI_COMPATIBLE() (fsad_abi_version() == FSAD_ABI_VERSION)

#ifdef __cplusplus
}
#endif

#endif /* FSAD_FSAD_H */
