/* fsad from C: fit on a few normal images, score files and an in-memory buffer, decide, save,
 * load, score again, and show an error message. Builds against the installed library:
 *   cc fsad_example.c $(pkg-config --cflags --libs fsad) -o fsad_example      (or CMakeLists.txt)
 * Usage: fsad_example MODEL_OUT TEST_IMAGE NORMAL_IMAGE...
 */
#include <fsad/fsad.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int report(fsad_status s, const char* what) {
    if (s == FSAD_OK) return 0;
    fprintf(stderr, "%s failed (%s): %s\n", what, fsad_status_name(s), fsad_last_error());
    return 1;
}

static int on_progress(const char* stage, int64_t done, int64_t total, float loss, void* user) {
    (void)loss;
    ++*(int*)user;
    if (done == total) printf("  %s %lld/%lld\n", stage, (long long)done, (long long)total);
    return 0; /* nonzero would cancel fit */
}

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_OUT TEST_IMAGE NORMAL_IMAGE...\n", argv[0]);
        return 2;
    }
    if (!FSAD_ABI_COMPATIBLE()) {
        fprintf(stderr, "libfsad_c speaks ABI %d, this program was built for %d\n", (int)fsad_abi_version(), FSAD_ABI_VERSION);
        return 1;
    }
    printf("fsad %s, ABI %d\n", fsad_version(), (int)fsad_abi_version());

    /* a small untrained backbone keeps the example fast; real use: "weights": "<checkpoint>" */
    const char* config = "{\"backbone\": \"resnet18\", \"width\": 0.125, \"weights\": \"\", \"resolution\": 32,"
                         " \"scorer\": \"patch-knn\", \"seed\": 7, \"threads\": 2}";
    fsad_detector* det = NULL;
    if (report(fsad_detector_create(config, &det), "create")) return 1;

    int calls = 0;
    if (report(fsad_detector_fit_files(det, (const char* const*)(argv + 3), (size_t)(argc - 3), on_progress, &calls), "fit"))
        return 1;
    double threshold = 0;
    fsad_detector_threshold(det, &threshold);
    printf("fitted on %d image(s), %d progress calls, threshold %.4f\n", argc - 3, calls, threshold);

    const char* test[1] = {argv[2]};
    float file_score = 0;
    if (report(fsad_detector_score_files(det, test, 1, &file_score), "score")) return 1;
    printf("score %s %.4f\n", argv[2], file_score);

    /* a 48 x 40 gray gradient in the caller's memory, rows padded to 64 bytes */
    enum { W = 48, H = 40, STRIDE = 64 };
    static unsigned char pixels[H * STRIDE];
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) pixels[y * STRIDE + x] = (unsigned char)(x * 5 + y);
    fsad_image img = {pixels, W, H, 1, FSAD_PIXEL_U8, STRIDE};
    float buf_score = 0;
    uint8_t anomalous = 0;
    if (report(fsad_detector_decide_images(det, &img, 1, &buf_score, &anomalous), "decide")) return 1;
    printf("buffer score %.4f anomalous %d\n", buf_score, anomalous);
    static float map[W * H];
    float map_score = 0;
    if (report(fsad_detector_score_map(det, &img, map, W * H, &map_score), "score_map")) return 1;
    printf("map %dx%d, score %.4f (%s the decide call's)\n", W, H, map_score, map_score == buf_score ? "equal to" : "NOT");

    if (report(fsad_detector_save(det, argv[1]), "save")) return 1;
    fsad_detector* loaded = NULL;
    if (report(fsad_detector_load(argv[1], "cpu", &loaded), "load")) return 1;
    float again = 0;
    if (report(fsad_detector_score_files(loaded, test, 1, &again), "score (loaded)")) return 1;
    printf("loaded model scores %.4f (%s)\n", again, fabsf(again - file_score) <= 1e-3f * fabsf(file_score) ? "same" : "DIFFERENT");

    char* json = NULL;
    if (report(fsad_detector_config_json(loaded, &json), "config")) return 1;
    printf("config %.60s...\n", json);
    fsad_free(json);

    /* errors come back as a status and a message naming the problem */
    fsad_detector* none = NULL;
    fsad_status s = fsad_detector_load("no/such/model.fsad", NULL, &none);
    printf("loading a missing file: %s: %s\n", fsad_status_name(s), fsad_last_error());

    fsad_detector_free(loaded);
    fsad_detector_free(det);
    return fabsf(again - file_score) <= 1e-3f * fabsf(file_score) && s == FSAD_ERR_IO ? 0 : 1;
}
