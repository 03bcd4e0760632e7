// Shape: up to 6 dimensions stored inline (no heap allocation per op).
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "fsad/core/error.hpp"

namespace fsad {

class Shape {
public:
    static constexpr int kMaxDims = 6;

    Shape() = default;
    Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
    explicit Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }

    int ndim() const { return ndim_; }
    int64_t operator[](int i) const { return d_[static_cast<size_t>(i < 0 ? i + ndim_ : i)]; }
    int64_t& operator[](int i) { return d_[static_cast<size_t>(i < 0 ? i + ndim_ : i)]; }
    int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < ndim_; ++i) n *= d_[static_cast<size_t>(i)];
        return n;
    }
    std::vector<int64_t> vec() const { return {d_.begin(), d_.begin() + ndim_}; }
    friend bool operator==(const Shape& a, const Shape& b) {
        if (a.ndim_ != b.ndim_) return false;
        for (int i = 0; i < a.ndim_; ++i)
            if (a.d_[static_cast<size_t>(i)] != b.d_[static_cast<size_t>(i)]) return false;
        return true;
    }
    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < ndim_; ++i) s += (i ? ", " : "") + std::to_string(d_[static_cast<size_t>(i)]);
        return s + "]";
    }

private:
    template <class It>
    void assign(It b, It e) {
        ndim_ = 0;
        for (; b != e; ++b) {
            FSAD_CHECK(ndim_ < kMaxDims, "Shape: more than ", kMaxDims, " dimensions");
            FSAD_CHECK(*b >= 0, "Shape: negative dimension ", *b);
            d_[static_cast<size_t>(ndim_++)] = *b;
        }
    }
    std::array<int64_t, kMaxDims> d_{};
    int ndim_ = 0;
};

}  // namespace fsad
