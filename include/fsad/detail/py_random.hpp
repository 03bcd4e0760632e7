// Python's random module, bit for bit, for the few-shot draws of reference protocols
// (../shared/peers/mt_reference.py uses random.Random(seed).sample(sorted paths, k)):
// MT19937 seeded with init_by_array as CPython's random.seed(int), randbelow by rejection of
// getrandbits, and random.sample's set-based selection.
// Internal (include/fsad/detail/): needed by public headers, the library's sources or its tests,
// not part of the API; it may change without notice. The umbrella fsad/fsad.hpp does not list it.
#pragma once
#include <cstdint>
#include <unordered_set>
#include <vector>

namespace fsad::eval {

class PyRandom {
public:
    explicit PyRandom(uint64_t seed) {
        // CPython: key = 32-bit words of abs(seed), least significant first; [0] for 0
        std::vector<uint32_t> key;
        do {
            key.push_back(static_cast<uint32_t>(seed & 0xffffffffu));
            seed >>= 32;
        } while (seed);
        init_by_array(key);
    }
    uint32_t genrand_uint32() {
        if (idx_ >= 624) twist();
        uint32_t y = mt_[idx_++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        return y;
    }
    /// random.getrandbits(k) for 1 <= k <= 32
    uint32_t getrandbits(int k) { return genrand_uint32() >> (32 - k); }
    /// random._randbelow(n), n >= 1
    uint32_t randbelow(uint32_t n) {
        int k = 0;
        for (uint32_t v = n; v; v >>= 1) ++k;  // n.bit_length()
        uint32_t r = getrandbits(k);
        while (r >= n) r = getrandbits(k);
        return r;
    }
    /// Indices chosen by random.sample(range(n), k), in order.
    std::vector<int64_t> sample(int64_t n, int64_t k) {
        std::vector<int64_t> out;
        int64_t setsize = 21;
        if (k > 5) {
            int64_t p = 1, e = 0;  // 4 ** ceil(log(3k, 4))
            while (p < 3 * k) {
                p *= 4;
                ++e;
            }
            setsize += p;
        }
        if (n <= setsize) {
            std::vector<int64_t> pool(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) pool[static_cast<size_t>(i)] = i;
            for (int64_t i = 0; i < k; ++i) {
                const int64_t j = randbelow(static_cast<uint32_t>(n - i));
                out.push_back(pool[static_cast<size_t>(j)]);
                pool[static_cast<size_t>(j)] = pool[static_cast<size_t>(n - i - 1)];
            }
        } else {
            std::unordered_set<int64_t> selected;
            for (int64_t i = 0; i < k; ++i) {
                int64_t j = randbelow(static_cast<uint32_t>(n));
                while (selected.count(j)) j = randbelow(static_cast<uint32_t>(n));
                selected.insert(j);
                out.push_back(j);
            }
        }
        return out;
    }

private:
    void init_genrand(uint32_t s) {
        mt_[0] = s;
        for (uint32_t i = 1; i < 624; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + i;
        idx_ = 624;
    }
    void init_by_array(const std::vector<uint32_t>& key) {
        init_genrand(19650218u);
        uint32_t i = 1, j = 0;
        const uint32_t len = static_cast<uint32_t>(key.size());
        for (uint32_t k = 624 > len ? 624 : len; k; --k) {
            mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + j;
            if (++i >= 624) {
                mt_[0] = mt_[623];
                i = 1;
            }
            if (++j >= len) j = 0;
        }
        for (uint32_t k = 623; k; --k) {
            mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - i;
            if (++i >= 624) {
                mt_[0] = mt_[623];
                i = 1;
            }
        }
        mt_[0] = 0x80000000u;
    }
    void twist() {
        for (uint32_t i = 0; i < 624; ++i) {
            const uint32_t y = (mt_[i] & 0x80000000u) | (mt_[(i + 1) % 624] & 0x7fffffffu);
            mt_[i] = mt_[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        idx_ = 0;
    }
    uint32_t mt_[624]{};
    uint32_t idx_ = 625;
};

}  // namespace fsad::eval
