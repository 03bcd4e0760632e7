// Tensor: float32, contiguous (row-major / NCHW), shared storage, device tag.
// Views (reshape, slice along dim 0) share storage; copies are explicit (clone, to).
#pragma once
#include <cstring>
#include <memory>
#include <vector>

#include "fsad/core/allocator.hpp"
#include "fsad/core/device.hpp"
#include "fsad/core/shape.hpp"

namespace fsad {

/// A block of device memory, returned to the caching allocator when the last owner goes.
class Storage {
public:
    Storage(Device dev, size_t bytes) : dev_(dev), bytes_(bytes), ptr_(device_malloc(dev, bytes)) {}
    ~Storage() { device_free(dev_, ptr_, bytes_); }
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    void* data() const { return ptr_; }
    size_t bytes() const { return bytes_; }
    Device device() const { return dev_; }

private:
    Device dev_;
    size_t bytes_;
    void* ptr_;
};

class Tensor {
public:
    Tensor() = default;

    /// Uninitialised tensor of `shape` on `dev`.
    static Tensor empty(const Shape& shape, Device dev = Device::cpu()) {
        Tensor t;
        t.shape_ = shape;
        t.storage_ = std::make_shared<Storage>(dev, static_cast<size_t>(shape.numel()) * sizeof(float));
        return t;
    }
    static Tensor zeros(const Shape& shape, Device dev = Device::cpu()) {
        Tensor t = empty(shape, dev);
        t.zero_();
        return t;
    }
    static Tensor full(const Shape& shape, float v, Device dev = Device::cpu()) {
        Tensor t = empty(shape, dev);
        t.fill_(v);
        return t;
    }
    /// Copies `values` (numel must match) into a new tensor on `dev`.
    static Tensor from_vector(const Shape& shape, const std::vector<float>& values, Device dev = Device::cpu()) {
        FSAD_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Tensor::from_vector: ", values.size(),
                   " values for shape ", shape.str());
        Tensor t = empty(shape, dev);
        if (!values.empty())
            device_memcpy(t.data(), dev, values.data(), Device::cpu(), values.size() * sizeof(float));
        return t;
    }

    bool defined() const { return storage_ != nullptr; }
    const Shape& shape() const { return shape_; }
    int ndim() const { return shape_.ndim(); }
    int64_t dim(int i) const { return shape_[i]; }
    int64_t numel() const { return shape_.numel(); }
    size_t bytes() const { return static_cast<size_t>(numel()) * sizeof(float); }
    Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
    bool is_cuda() const { return device().is_cuda(); }

    float* data() const { return storage_ ? static_cast<float*>(storage_->data()) + offset_ : nullptr; }
    /// Host pointer; throws when the tensor lives on a GPU.
    float* host() const {
        FSAD_CHECK(!defined() || device().is_cpu(), "Tensor::host: tensor is on ", device().str());
        return data();
    }
    const std::shared_ptr<Storage>& storage() const { return storage_; }
    bool same_storage(const Tensor& o) const { return storage_ == o.storage_; }

    /// View with a new shape of the same number of elements.
    Tensor reshape(const Shape& s) const {
        FSAD_CHECK(s.numel() == numel(), "reshape: cannot view ", shape_.str(), " as ", s.str());
        Tensor t = *this;
        t.shape_ = s;
        return t;
    }
    /// View of rows [begin, end) along dimension 0.
    Tensor slice(int64_t begin, int64_t end) const {
        FSAD_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= dim(0), "slice: [", begin, ", ", end,
                   ") out of range for shape ", shape_.str());
        Tensor t = *this;
        int64_t row = numel() / (dim(0) ? dim(0) : 1);
        t.offset_ += begin * row;
        t.shape_[0] = end - begin;
        return t;
    }
    Tensor operator[](int64_t i) const {
        Tensor t = slice(i, i + 1);
        std::vector<int64_t> d = shape_.vec();
        d.erase(d.begin());
        return t.reshape(Shape(d));
    }

    /// Deep copy on `dev` (always a copy, also when dev == device()).
    Tensor to(Device dev) const {
        Tensor t = empty(shape_, dev);
        if (numel()) device_memcpy(t.data(), dev, data(), device(), bytes());
        return t;
    }
    Tensor clone() const { return to(device()); }
    /// Copies `src` (same numel) into this tensor's memory, across devices if needed.
    void copy_from(const Tensor& src) const {
        FSAD_CHECK(src.numel() == numel(), "copy_from: ", src.shape().str(), " into ", shape_.str());
        if (numel()) device_memcpy(data(), device(), src.data(), src.device(), bytes());
    }
    void fill_(float v) const;
    void zero_() const { fill_(0.0f); }

    std::vector<float> to_vector() const {
        std::vector<float> v(static_cast<size_t>(numel()));
        if (numel()) device_memcpy(v.data(), Device::cpu(), data(), device(), bytes());
        return v;
    }
    float item() const {
        FSAD_CHECK(numel() == 1, "item: tensor of shape ", shape_.str(), " is not a scalar");
        return to_vector()[0];
    }

private:
    std::shared_ptr<Storage> storage_;
    int64_t offset_ = 0;  // in elements
    Shape shape_;
};

}  // namespace fsad
