// The image-set kernels on the GPU: the kernels are in augment.cuh (run by the CPU tests on the
// SIMT emulator too); here, the per-image parameters copied to the device and the stream.
#include <algorithm>
#include <vector>

#include "augment.cuh"
#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

// A host array copied to scratch on the device (stream-ordered: freed after the kernels that read it).
template <class T>
struct OnDevice : Scratch<T> {
    OnDevice(int device, cudaStream_t s, const std::vector<T>& v) : Scratch<T>(device, std::max<size_t>(v.size(), 1)) {
        if (!v.empty())
            FSAD_CUDA_CHECK(cudaMemcpyAsync(this->p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, s));
    }
};

int64_t most_values(const std::vector<ops::PackedImage>& images) {
    int64_t m = 1;
    for (const auto& i : images) m = std::max(m, 3 * i.h * i.w);
    return m;
}

}  // namespace

void crop_resize_images(const Tensor& src, const std::vector<ops::PackedImage>& images, const std::vector<ops::CropJob>& jobs,
                        const std::vector<ops::PackedImage>& out_images, const Tensor& y) {
    const int dev = src.device().index;
    StreamLaunch launch{context(dev).stream};
    const OnDevice<ops::PackedImage> in(dev, launch.stream, images), out(dev, launch.stream, out_images);
    const OnDevice<ops::CropJob> j(dev, launch.stream, jobs);
    augment::crop(launch, src.data(), in.p, j.p, out.p, y.data(), static_cast<int64_t>(jobs.size()), most_values(out_images));
}

void rotate_images(const Tensor& x, const std::vector<ops::PackedImage>& images, const std::vector<float>& degrees,
                   const Tensor& y) {
    const int dev = x.device().index;
    StreamLaunch launch{context(dev).stream};
    std::vector<math::RotateMap> maps;
    for (size_t i = 0; i < images.size(); ++i) maps.push_back(math::rotate_map(images[i].h, images[i].w, degrees[i]));
    const OnDevice<ops::PackedImage> im(dev, launch.stream, images);
    const OnDevice<math::RotateMap> m(dev, launch.stream, maps);
    augment::rotate(launch, x.data(), im.p, m.p, y.data(), static_cast<int64_t>(images.size()), most_values(images));
}

void colour_images(const Tensor& x, const std::vector<ops::PackedImage>& images, const std::vector<ops::ColourOp>& ops,
                   const Tensor& y) {
    const int dev = x.device().index;
    StreamLaunch launch{context(dev).stream};
    const OnDevice<ops::PackedImage> im(dev, launch.stream, images);
    const OnDevice<ops::ColourOp> o(dev, launch.stream, ops);
    Scratch<double> mean(dev, images.size());
    const bool contrast = std::any_of(ops.begin(), ops.end(), [](const ops::ColourOp& c) { return c.kind == math::Colour::Contrast; });
    augment::colour(launch, x.data(), im.p, o.p, mean.p, y.data(), static_cast<int64_t>(images.size()), most_values(images),
                    contrast);
}

void blur_images(const Tensor& x, const std::vector<ops::PackedImage>& images, const std::vector<float>& taps,
                 const std::vector<int64_t>& starts, const Tensor& y) {
    const int dev = x.device().index;
    StreamLaunch launch{context(dev).stream};
    const OnDevice<ops::PackedImage> im(dev, launch.stream, images);
    const OnDevice<float> k(dev, launch.stream, taps);
    const OnDevice<int64_t> s(dev, launch.stream, starts);
    Scratch<float> tmp(dev, static_cast<size_t>(x.numel()));
    augment::blur(launch, x.data(), im.p, k.p, s.p, tmp.p, y.data(), static_cast<int64_t>(images.size()), most_values(images));
}

void paste_images(const Tensor& dst, const std::vector<ops::PackedImage>& dst_images, const Tensor& patches,
                  const std::vector<ops::PackedImage>& patch_images, const std::vector<ops::PasteJob>& jobs) {
    const int dev = dst.device().index;
    StreamLaunch launch{context(dev).stream};
    std::vector<math::RotateMap> maps;
    int64_t most = 1;
    for (const auto& j : jobs) {
        maps.push_back(math::rotate_map(j.canvas_h, j.canvas_w, j.degrees));
        if (j.patch >= 0) most = std::max(most, 3 * j.canvas_h * j.canvas_w);
    }
    const OnDevice<ops::PackedImage> d(dev, launch.stream, dst_images), p(dev, launch.stream, patch_images);
    const OnDevice<ops::PasteJob> j(dev, launch.stream, jobs);
    const OnDevice<math::RotateMap> m(dev, launch.stream, maps);
    augment::paste(launch, dst.data(), d.p, patches.data(), p.p, j.p, m.p, static_cast<int64_t>(jobs.size()), most);
}

void imagenet_normalize(const Tensor& x, int64_t n, int64_t hw, const Tensor& y) {
    StreamLaunch launch{context(x.device().index).stream};
    augment::normalize(launch, x.data(), y.data(), n, hw);
}

}  // namespace fsad::cuda
