// Times fsad::Detector::score from in-memory 8-bit RGB images, the C++ side of
// bench/python_overhead.py (which times the same through the Python package and compares).
// The images are converted to the detector's float form inside the timed loop, as the C ABI does.
// Usage: score_timing MODEL N BATCH SIZE REPS
//   -> prints {"seconds": best of REPS (wall), "cpu_seconds": that pass's process CPU time, "images": N, ...}
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdlib>
#include <fsad/fsad.hpp>
#include <iostream>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 6) {
        std::cerr << "usage: score_timing MODEL N BATCH SIZE REPS\n";
        return 2;
    }
    const int64_t n = std::atoll(argv[2]), batch = std::atoll(argv[3]), size = std::atoll(argv[4]);
    const int reps = std::atoi(argv[5]);
    try {
        const fsad::Detector det = fsad::Detector::load(argv[1]);
        // the images of bench/python_overhead.py: pixel (y, x, c) = (x * 3 + y * 5 + c * 70 + 11 * i) mod 256
        std::vector<std::vector<uint8_t>> imgs(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            auto& im = imgs[static_cast<size_t>(i)];
            im.resize(static_cast<size_t>(size * size * 3));
            for (int64_t y = 0; y < size; ++y)
                for (int64_t x = 0; x < size; ++x)
                    for (int64_t c = 0; c < 3; ++c)
                        im[static_cast<size_t>((y * size + x) * 3 + c)] = static_cast<uint8_t>((x * 3 + y * 5 + c * 70 + 11 * i) % 256);
        }
        double best = 1e30, best_cpu = 0;
        float sink = 0;
        for (int r = 0; r < reps; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            const std::clock_t c0 = std::clock();
            for (int64_t b = 0; b < n; b += batch) {
                std::vector<fsad::Tensor> ts;
                for (int64_t i = b; i < std::min(n, b + batch); ++i) {
                    fsad::Tensor t = fsad::Tensor::empty(fsad::Shape{3, size, size});
                    const uint8_t* p = imgs[static_cast<size_t>(i)].data();
                    float* o = t.data();
                    for (int64_t k = 0; k < size * size; ++k)
                        for (int64_t c = 0; c < 3; ++c) o[c * size * size + k] = static_cast<float>(p[k * 3 + c]) / 255.0f;
                    ts.push_back(t);
                }
                for (float s : det.score(ts)) sink += s;
            }
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (wall < best) {
                best = wall;
                best_cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
            }
        }
        std::cout << "{\"seconds\": " << best << ", \"cpu_seconds\": " << best_cpu << ", \"images\": " << n << ", \"checksum\": " << sink / static_cast<float>(reps)
                  << "}\n";
    } catch (const std::exception& e) {
        std::cerr << "score_timing: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
