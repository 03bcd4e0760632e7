// The caching allocator both backends use (include/fsad/core/allocator.hpp says why it caches):
// returned blocks are kept in a size-ordered free list; a request takes the smallest cached block
// within the memory's reuse limit, otherwise the memory's allocation, and when that fails the
// cache is released and the allocation tried once more.
//
// Memory says how blocks are made (the host's aligned_alloc, cudaMalloc on one device):
//   size_t round(size_t bytes) const;     rounding, so that nearby sizes share blocks
//   size_t reuse_limit(size_t size) const; the largest cached block handed out for `size`
//   void* allocate(size_t size);          nullptr when out of memory (other failures throw)
//   void deallocate(void* p);
//   void settle();                        waits until queued work no longer reads cached blocks
#pragma once
#include <algorithm>
#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "fsad/core/allocator.hpp"

namespace fsad {

template <class Memory>
class CachingPool {
public:
    template <class... Args>
    explicit CachingPool(Args&&... args) : memory_(std::forward<Args>(args)...) {}
    CachingPool(const CachingPool&) = delete;
    CachingPool& operator=(const CachingPool&) = delete;

    /// A block of at least `bytes`, or nullptr when the memory has none even with the cache
    /// released (the caller names the failure).
    void* allocate(size_t bytes) {
        size_t size = memory_.round(bytes);
        {
            std::lock_guard<std::mutex> lk(mu_);
            auto it = free_blocks_.lower_bound(size);
            if (it != free_blocks_.end() && it->first <= memory_.reuse_limit(size)) {
                void* p = it->second;
                size = it->first;
                free_blocks_.erase(it);
                stats_.bytes_cached -= size;
                ++stats_.reuses;
                record_live(p, size);
                return p;
            }
        }
        void* p = memory_.allocate(size);
        if (!p) {
            release_cached();
            p = memory_.allocate(size);
        }
        if (!p) return nullptr;
        std::lock_guard<std::mutex> lk(mu_);
        ++stats_.allocations;
        record_live(p, size);
        return p;
    }

    /// Takes back a block from allocate(bytes) into the cache.
    void release(void* p, size_t bytes) noexcept {
        if (!p) return;
        std::lock_guard<std::mutex> lk(mu_);
        auto it = live_.find(p);
        const size_t size = it != live_.end() ? it->second : memory_.round(bytes);
        if (it != live_.end()) live_.erase(it);
        free_blocks_.emplace(size, p);
        stats_.bytes_in_use -= std::min(stats_.bytes_in_use, size);
        stats_.bytes_cached += size;
    }

    /// Returns every cached block to the memory.
    void release_cached() {
        std::lock_guard<std::mutex> lk(mu_);
        memory_.settle();
        for (auto& [size, p] : free_blocks_) memory_.deallocate(p);
        free_blocks_.clear();
        stats_.bytes_cached = 0;
    }

    AllocatorStats stats() {
        std::lock_guard<std::mutex> lk(mu_);
        return stats_;
    }
    void reset_peak() {
        std::lock_guard<std::mutex> lk(mu_);
        stats_.peak_bytes_in_use = stats_.bytes_in_use;
    }
    void count_read_to_host() {
        std::lock_guard<std::mutex> lk(mu_);
        ++stats_.reads_to_host;
    }

private:
    void record_live(void* p, size_t size) {  // under mu_
        live_[p] = size;  // the real size: a reused block may be larger than asked
        stats_.bytes_in_use += size;
        stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    }

    Memory memory_;
    std::mutex mu_;
    std::multimap<size_t, void*> free_blocks_;  // real size -> block
    std::unordered_map<void*, size_t> live_;    // block -> real size
    AllocatorStats stats_;
};

}  // namespace fsad
