// A parallel loop whose body may throw: an exception cannot leave an OpenMP region (the program
// would end in std::terminate), so the first one is carried out of the loop and rethrown.
// Internal (include/fsad/detail/): needed by public headers, the library's sources or its tests,
// not part of the API; it may change without notice. The umbrella fsad/fsad.hpp does not list it.
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>

namespace fsad {

/// Runs body(i) for i in [0, n) on the CPU threads (OpenMP, dynamic schedule). When a body
/// throws, the iterations not yet started are skipped and the first exception is rethrown here.
template <class Body>
void parallel_for_each(int64_t n, Body&& body) {
    std::exception_ptr err;
    std::mutex mu;
    std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
        if (failed.load(std::memory_order_relaxed)) continue;
        try {
            body(i);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mu);
            if (!err) err = std::current_exception();
            failed = true;
        }
    }
    if (err) std::rethrow_exception(err);
}

}  // namespace fsad
